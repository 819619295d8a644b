//! The mail each console action sends the person, in one place: Japanese first, then English,
//! then the support desk. Only a rejection carries the operator's note (it is the reason the
//! person is owed); other notes are the secretariat's own and stay in the audit log. A password
//! reset never carries the password: the secretariat hands it over by phone.
//!
//! Sending is `crate::mail`'s (when `[mail]` is configured); the console builds the message and
//! hands it over after the action succeeded.

use crate::config::SupportConfig;

use super::action::Action;
use super::records::Detail;

/// One message to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionMail {
    pub to: String,
    pub subject: String,
    /// Plain text, JA first then EN.
    pub body: String,
}

/// (subject JA, subject EN, body JA, body EN) for an action.
fn text(action: Action) -> (&'static str, &'static str, &'static str, &'static str) {
    match action {
        Action::Approve => (
            "SSO利用申請を承認しました",
            "Your SSO application was approved",
            "G-MISアカウントでのSSO利用申請を承認しました。次回G-MISからログインすると、利用規約への同意画面が表示されます。",
            "Your application to log in to 医療情報ネット with your G-MIS account was approved. At your next login from G-MIS you will be asked to agree to the terms of use.",
        ),
        Action::Reject => (
            "SSO利用申請を承認できませんでした",
            "Your SSO application was not approved",
            "G-MISアカウントでのSSO利用申請を承認できませんでした。理由は下記のとおりです。ご不明な点は事務局までお問い合わせください。",
            "Your application to log in to 医療情報ネット with your G-MIS account was not approved, for the reason below. Please contact the secretariat with any questions.",
        ),
        Action::Reopen => (
            "SSOの利用を再開しました",
            "SSO has been reopened for your account",
            "G-MISアカウントでのSSO利用を再開しました。次回G-MISからログインすると、利用規約への同意画面が表示されます。",
            "Logging in with your G-MIS account is possible again. At your next login from G-MIS you will be asked to agree to the terms of use.",
        ),
        Action::Block => (
            "SSOの利用を停止しました",
            "SSO has been suspended for your account",
            "事務局の判断により、G-MISアカウントでのSSO利用を一時停止しました。再開については事務局までお問い合わせください。",
            "The secretariat has suspended logging in with your G-MIS account. Please contact the secretariat about reopening it.",
        ),
        Action::Unlink => (
            "アカウントの連携を解除しました",
            "Your accounts have been unlinked",
            "G-MISアカウントと医療情報ネットのアカウントの連携を解除しました。心当たりがない場合は事務局までお問い合わせください。",
            "Your G-MIS account is no longer linked to your 医療情報ネット account. If you did not expect this, please contact the secretariat.",
        ),
        Action::EndSessions => (
            "ログイン中のセッションを終了しました",
            "Your sessions have been ended",
            "事務局があなたのログイン中のセッションをすべて終了しました。引き続き利用するには、もう一度ログインしてください。",
            "The secretariat has ended all your sessions. Please log in again to continue.",
        ),
        Action::ResetPassword => (
            "パスワードを再発行しました",
            "Your password has been reset",
            "事務局があなたのパスワードを再発行しました。新しい仮パスワードは事務局からお電話でお伝えします（メールでは送りません）。最初のログインで変更してください。",
            "The secretariat has reset your password. They will tell you the new one-time password by phone (it is never sent by mail); change it at your first login.",
        ),
        Action::Unlock => (
            "アカウントのロックを解除しました",
            "Your account has been unlocked",
            "パスワードの誤入力によるロックを解除しました。再度ログインできます。",
            "The lock after too many wrong passwords has been lifted. You can log in again.",
        ),
    }
}

fn support_lines(s: &SupportConfig) -> String {
    let mut out = format!("お問い合わせ / Contact: {}\n", s.name);
    for (label, v) in [
        ("電話 / Phone", &s.phone),
        ("メール / Mail", &s.email),
        ("案内 / Help", &s.url),
        ("受付時間 / Hours", &s.hours),
    ] {
        if !v.is_empty() {
            out.push_str(&format!("{label}: {v}\n"));
        }
    }
    out
}

/// The mail for `action` on the person `d`, or `None` when no mail address is known.
pub fn for_action(
    action: Action,
    d: &Detail,
    note: &str,
    support: &SupportConfig,
) -> Option<ActionMail> {
    let to = d.profile.email.trim();
    if to.is_empty() || !to.contains('@') {
        return None;
    }
    let (sj, se, bj, be) = text(action);
    let name = d.profile.display_name.trim();
    let (greet_ja, greet_en) = if name.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{name} 様\n\n"), format!("Dear {name},\n\n"))
    };
    let (reason_ja, reason_en) = match action {
        Action::Reject => (format!("\n\n理由: {note}"), format!("\n\nReason: {note}")),
        _ => (String::new(), String::new()),
    };
    let body = format!(
        "{greet_ja}{bj}{reason_ja}\n\n――――\n\n{greet_en}{be}{reason_en}\n\n――――\n{}",
        support_lines(support)
    );
    Some(ActionMail {
        to: to.to_string(),
        subject: format!("【医療情報ネット】{sj} / {se}"),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Profile;

    fn person(mail: &str) -> Detail {
        Detail {
            gmis_id: Some("GM0012345".into()),
            profile: Profile {
                display_name: "山田 花子".into(),
                email: mail.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn every_action_has_a_bilingual_mail_and_only_a_rejection_tells_the_note() {
        let s = SupportConfig::default();
        for a in Action::ALL {
            let m = for_action(a, &person("hanako@example.jp"), "内部メモ", &s).unwrap();
            assert_eq!(m.to, "hanako@example.jp");
            let ja = m.body.find("山田 花子 様").expect("JA greeting");
            let en = m.body.find("Dear 山田 花子").expect("EN greeting");
            assert!(ja < en, "Japanese first: {}", m.body);
            assert!(m.subject.contains(" / "), "{}", m.subject);
            assert_eq!(
                m.body.contains("内部メモ"),
                a == Action::Reject,
                "{a:?}: {}",
                m.body
            );
            assert!(m.body.contains("G-MIS事務局"), "support desk: {}", m.body);
        }
        assert!(for_action(Action::Approve, &person(""), "x", &s).is_none());
    }
}
