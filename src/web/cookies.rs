//! The gateway's browser cookies other than the session cookie (`session`): one list of names,
//! one `__Host-` rule. On https every cookie is `__Host-` (Secure, Path=/, no Domain: no other
//! host or path can set or shadow it); on plain http (development) the bare name.

use super::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    /// The pending login waiting on the consent page.
    Consent,
    /// After 同意しない: the account, so a reload shows its blocked state.
    Decided,
    /// An SP-initiated request in flight.
    Request,
    /// An ID/password login between its steps (web::local).
    Login,
    /// The ID/password form's CSRF token (web::local).
    Csrf,
}

macro_rules! names {
    ($($v:ident => $n:literal),* $(,)?) => {
        impl Cookie {
            /// (https name, plain http name)
            const fn names(self) -> (&'static str, &'static str) {
                match self {
                    $(Cookie::$v => (concat!("__Host-", $n), $n),)*
                }
            }
        }
    };
}

names!(
    Consent => "samlgate-consent",
    Decided => "samlgate-decided",
    Request => "samlgate-req",
    Login => "samlgate-login",
    Csrf => "samlgate-csrf",
);

impl Cookie {
    pub fn name(self, https: bool) -> &'static str {
        let (secure, plain) = self.names();
        if https {
            secure
        } else {
            plain
        }
    }

    /// The name in force for this gateway.
    pub fn of(self, app: &App) -> &'static str {
        self.name(app.cfg.https)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_names_are_host_prefixed() {
        assert_eq!(Cookie::Consent.name(true), "__Host-samlgate-consent");
        assert_eq!(Cookie::Request.name(false), "samlgate-req");
        assert_eq!(Cookie::Decided.name(true), "__Host-samlgate-decided");
    }
}
