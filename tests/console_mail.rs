//! The console's action mail on the wire (issue 14): with `[mail]` configured, approving an
//! application and rejecting one with a note each deliver one mail to the person's address
//! through a real SMTP server on loopback (python aiosmtpd, tests/support/smtp_sink.py, which
//! parses each message with Python's own `email` package).

mod common;
mod console_kit;
mod local_common;

use common::*;
use console_kit::*;
use local_common::SmtpSink;
use serde_json::Value;

/// The refused 保健所 user `id` with the address `mail`: one response for the ACS.
fn person_response(gw: &Gateway, id: &str, name: &str, mail: &str) -> String {
    let case = vec![
        "--nameid".to_string(),
        id.to_string(),
        "--attr".into(),
        "accountCategory=保健所".into(),
        "--attr".into(),
        format!("displayName={name}"),
        "--attr".into(),
        format!("mail={mail}"),
        "--attr".into(),
        "facilityName=千代田保健所".into(),
        "--attr".into(),
        "facilityCode=1310000001".into(),
    ];
    let case: Vec<&str> = case.iter().map(String::as_str).collect();
    gw.make_responses(&[case]).remove(0)
}

fn act(b: &mut Browser, id: &str, action: &str, note: &str) {
    let page = b.get(&format!("/console/account?id={id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.hidden("csrf");
    let p = b.post(
        "/console/action",
        &[
            ("csrf", &csrf),
            ("id", id),
            ("action", action),
            ("note", note),
        ],
    );
    assert_eq!(p.status, 303, "{action}: {}", p.body);
}

fn text<'m>(m: &'m Value, key: &str) -> &'m str {
    m[key].as_str().unwrap_or_else(|| panic!("no {key} in {m}"))
}

#[test]
fn approving_and_rejecting_an_application_mail_the_person_through_smtp() {
    let smtp = SmtpSink::start("none", None);
    let gw = gateway(&format!(
        "[mail]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"医療情報ネット事務局 <noreply@iryou.example.jp>\"\n\
         attempts = 2\nretry_seconds = 1\ntimeout_seconds = 5\n",
        smtp.port
    ));
    let approved = person_response(&gw, "GM7000011", "保健 一郎", "ichiro@hc.example.jp");
    let rejected = person_response(&gw, "GM7000012", "保健 二郎", "jiro@hc.example.jp");
    apply_from_refusal(&gw, &approved);
    apply_from_refusal(&gw, &rejected);
    let secret = operator(&gw, "suzuki");
    let mut b = console_login(&gw.public_url(), "suzuki", &secret, 30);

    // Approve: one mail to the applicant, the approval's subject and text, no internal note.
    act(&mut b, "GM7000011", "approve", "電話で本人確認済み");
    let mails = smtp.wait_for(1);
    let m = &mails[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ichiro@hc.example.jp"]));
    assert_eq!(m["mail_from"], "noreply@iryou.example.jp");
    assert_eq!(
        text(m, "subject"),
        "【医療情報ネット】SSO利用申請を承認しました / Your SSO application was approved"
    );
    let body = text(m, "body");
    for want in [
        "保健 一郎 様",
        "SSO利用申請を承認しました",
        "Your application to log in to 医療情報ネット with your G-MIS account was approved",
        "テスト事務局",
        "03-1234-5678",
    ] {
        assert!(body.contains(want), "{want} not in:\n{body}");
    }
    assert!(
        !body.contains("電話で本人確認済み"),
        "internal note: {body}"
    );

    // Reject with a note: one more mail, to the other applicant, carrying the note.
    act(
        &mut b,
        "GM7000012",
        "reject",
        "所属の確認が取れませんでした",
    );
    let mails = smtp.wait_for(2);
    let m = mails
        .iter()
        .find(|m| m["rcpt_tos"] == serde_json::json!(["jiro@hc.example.jp"]))
        .unwrap_or_else(|| panic!("no mail to jiro: {mails:#?}"));
    assert_eq!(
        text(m, "subject"),
        "【医療情報ネット】SSO利用申請を承認できませんでした / Your SSO application was not approved"
    );
    let body = text(m, "body");
    for want in [
        "保健 二郎 様",
        "理由: 所属の確認が取れませんでした",
        "Reason: 所属の確認が取れませんでした",
    ] {
        assert!(body.contains(want), "{want} not in:\n{body}");
    }
}
