//! Pages for people (askama templates, Japanese with an English fallback) and the response
//! helpers every handler uses, which add the security headers.

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};

use std::sync::{Arc, RwLock};

use crate::config::SupportConfig;
use crate::identity::Profile;
use crate::reason::Reason;

/// `[support]` for the templates (footer and refusal pages). Process-wide because many pages
/// are rendered where no `App` is at hand; set once when the `App` is made.
static SUPPORT: RwLock<Option<Arc<SupportConfig>>> = RwLock::new(None);

pub fn set_support(s: &SupportConfig) {
    *SUPPORT.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(s.clone()));
}

pub fn support() -> Arc<SupportConfig> {
    SUPPORT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// The support reference a person reads over the phone: 8 digits in two groups (`4821-7730`),
/// derived from the request id. `web::handle` logs both on every page that shows one, so
/// `grep 4821-7730` on the log finds the request id and through it the event.
pub fn support_ref(request_id: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(request_id.as_bytes());
    let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % 100_000_000;
    format!("{:04}-{:04}", n / 10_000, n % 10_000)
}

pub type Body = Full<Bytes>;
pub type Resp = Response<Body>;

/// The cookie that keeps a language chosen with a `?lang=` link.
pub const LANG_COOKIE: &str = "samlgate-lang";

/// The page language: `?lang=` wins, then the `samlgate-lang` cookie, then Accept-Language (highest q among ja/en), then ja.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(&self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn other(&self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    pub fn t<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    pub fn of<B>(req: &Request<B>) -> Lang {
        if let Some(q) = req.uri().query() {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                if k == "lang" {
                    return if v == "en" { Lang::En } else { Lang::Ja };
                }
            }
        }
        // A language chosen with a `?lang=` link earlier (web::remember_lang) survives the
        // trip through G-MIS and the pages that answer a POST.
        let chosen = req.headers().get_all(hyper::header::COOKIE);
        let chosen = crate::session::cookie_values(
            LANG_COOKIE,
            chosen.iter().filter_map(|v| v.to_str().ok()),
        );
        match chosen.first().copied() {
            Some("en") => return Lang::En,
            Some("ja") => return Lang::Ja,
            _ => {}
        }
        let header = req
            .headers()
            .get(hyper::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Self::from_accept_language(header)
    }

    pub fn from_accept_language(h: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in h.split(',') {
            let mut it = part.trim().split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|x| x.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "ja" || tag.starts_with("ja-") {
                Lang::Ja
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::Ja)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub message: &'a str,
    /// The same message in the other language: terminal pages answer a POST, so a language
    /// link could not reload them; both languages are on the page instead.
    pub other: &'a str,
    pub code: &'a str,
    pub request_id: &'a str,
    pub action_href: Option<&'a str>,
    pub action_label: &'a str,
    /// The message reports a success (green box) rather than a problem (red box).
    pub success: bool,
}

impl ErrorPage<'_> {
    pub fn reference(&self) -> String {
        support_ref(self.request_id)
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub lang: Lang,
    pub profile: &'a Profile,
}

pub const STYLE_CSS: &str = include_str!("../../static/style.css");

/// Headers every answer carries. No inline script or style anywhere, so the CSP can forbid both.
pub fn secure_headers(resp: &mut Resp, https: bool) {
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action *; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if https {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

pub fn html(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn redirect(status: StatusCode, location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

pub fn render<T: Template>(status: StatusCode, t: &T) -> Resp {
    match t.render() {
        Ok(s) => html(status, s),
        Err(e) => {
            tracing::error!(error = %e, "template render failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal error",
            )
        }
    }
}

/// The page for a refused login. Carries the reason code in `X-Samlgate-Reason` for operators
/// and tests; the person sees a short message and the request id.
pub fn refusal_page(
    lang: Lang,
    reason: Reason,
    request_id: &str,
    retry_href: Option<&str>,
) -> Resp {
    let (ja, en) = reason.message();
    let (title_ja, title_en) = reason.title();
    let page = ErrorPage {
        lang,
        title: lang.t(title_ja, title_en),
        message: lang.t(ja, en),
        other: lang.other().t(ja, en),
        code: reason.code(),
        request_id,
        action_href: retry_href,
        action_label: lang.t("ログイン画面へ", "Go to the login page"),
        success: false,
    };
    let mut r = render(reason.status(), &page);
    r.headers_mut()
        .insert("x-samlgate-reason", HeaderValue::from_static(reason.code()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_highest_q() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ja;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("ja,en-US;q=0.9"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("fr-FR,en;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("de"), Lang::Ja);
        assert_eq!(Lang::from_accept_language(""), Lang::Ja);
        assert_eq!(Lang::from_accept_language("en;q=0, ja;q=0.1"), Lang::Ja);
    }

    #[test]
    fn refusal_page_escapes_and_names_reason() {
        let r = refusal_page(Lang::En, Reason::Replay, "<rid>", None);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()["x-samlgate-reason"], "replay");
    }

    #[test]
    fn support_ref_is_grouped_digits_and_stable() {
        let a = support_ref("lEfSMYy9ohhh");
        assert_eq!(a, support_ref("lEfSMYy9ohhh"));
        assert_ne!(a, support_ref("lEfSMYy9ohhi"));
        let b = a.as_bytes();
        assert_eq!(b.len(), 9, "{a}");
        assert_eq!(b[4], b'-', "{a}");
        assert!(
            a.chars().filter(|c| *c != '-').all(|c| c.is_ascii_digit()),
            "{a}"
        );
    }

    #[test]
    fn refusal_page_shows_support_and_reference_not_request_id() {
        set_support(&SupportConfig {
            name: "テスト事務局".into(),
            phone: "03-1234-5678".into(),
            email: "help@example.jp".into(),
            url: "https://help.example.jp/".into(),
            hours: "平日 9:00-17:00".into(),
        });
        let r = refusal_page(Lang::Ja, Reason::Replay, "rid0000abcd", None);
        let body = String::from_utf8(futures_body(r.into_body())).unwrap();
        assert!(body.contains(&support_ref("rid0000abcd")), "{body}");
        assert!(!body.contains("rid0000abcd"), "{body}");
        for want in [
            "テスト事務局",
            "tel:0312345678",
            "mailto:help@example.jp",
            "https://help.example.jp/",
            "平日 9:00-17:00",
        ] {
            assert!(body.contains(want), "{want} missing: {body}");
        }
    }

    fn futures_body(b: Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(b.collect()).unwrap().to_bytes().to_vec()
    }
}
