//! `POST /saml/acs`: size limit, form decode, verification off the async threads, replay
//! record, login decision, session, redirect. One log line per attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::consent;
use super::pages::{self, Lang, Resp};
use super::App;
use crate::identity::attributes::map_profile;
use crate::login::{self, Decision};
use crate::reason::Outcome;
use crate::reason::{Reason, Refusal};
use crate::saml::acs::{decode_saml_response, verify_response, Expectations, Verified};
use crate::saml::authn;
use crate::saml::decrypt::DecryptKey;

/// What a successful ACS post decided, for the log line.
struct Accepted {
    resp: Resp,
    account_id: String,
    outcome: Outcome,
    signed: &'static str,
}

pub async fn post_acs(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr, rid: &str) -> Resp {
    let started = Instant::now();
    let lang = Lang::of(&req);
    let peer = super::client_ip(app, req.headers(), peer);
    let result = acs_inner(app, req, rid).await;
    let elapsed = started.elapsed();
    app.metrics.acs_latency(elapsed.as_secs_f64());
    let ms = elapsed.as_secs_f64() * 1000.0;
    match result {
        Ok(a) => {
            app.metrics.outcome(a.outcome);
            tracing::info!(
                target: "samlgate::login",
                request_id = rid, %peer, outcome = a.outcome.name(), reason = "",
                account_id = %a.account_id, signed = a.signed, ms,
                "login accepted"
            );
            a.resp
        }
        Err(e) => {
            let (refusal, account_id) = e.parts();
            app.metrics.refused(refusal.reason);
            tracing::warn!(
                target: "samlgate::login",
                request_id = rid, %peer, outcome = "refused", reason = refusal.reason.code(),
                account_id, detail = %refusal.detail, ms,
                "login refused"
            );
            pages::refusal_page(lang, refusal.reason, rid, Some("/login"))
        }
    }
}

/// Why an ACS post got no session. Every variant answers the same way (the refusal page of
/// its reason, one log line, one counter: `post_acs`); they differ in what the log can name.
enum AcsError {
    /// The post itself (size, content type, form) or the server (no verification slot, a task
    /// that died) refused it before anything was verified: no account to name.
    Post(Refusal),
    /// The response failed verification: nothing in it is trusted, so no account is named.
    Unverified(Refusal),
    /// A verified response whose login was refused (attributes, replay, an answered request,
    /// the store, an account changed meanwhile): the log names the account.
    Login {
        account_id: String,
        refusal: Refusal,
    },
}

impl AcsError {
    /// The refusal and the account id for the log line (empty when none is known).
    fn parts(&self) -> (&Refusal, &str) {
        match self {
            AcsError::Post(r) | AcsError::Unverified(r) => (r, ""),
            AcsError::Login {
                account_id,
                refusal,
            } => (refusal, account_id),
        }
    }
}

async fn acs_inner(
    app: &Arc<App>,
    req: Request<Incoming>,
    rid: &str,
) -> Result<Accepted, AcsError> {
    let lang = Lang::of(&req);
    let headers = req.headers().clone();
    let body = read_body(app, &headers, req)
        .await
        .map_err(AcsError::Post)?;

    // Verification is CPU-bound; bound how many run at once and run them on blocking threads.
    let permit = tokio::time::timeout(Duration::from_secs(10), app.verify_slots.acquire())
        .await
        .map_err(|_| {
            AcsError::Post(Refusal::new(
                Reason::Busy,
                "no verification slot within 10 s",
            ))
        })?
        .map_err(|_| AcsError::Post(Refusal::new(Reason::Internal, "verification slots closed")))?;
    // SP-initiated: the requests this browser started (sealed in its request cookies).
    let now_ts = chrono::Utc::now().timestamp();
    let tracked_all = super::sso::tracked_requests(app, &headers, now_ts);
    let expected: Vec<String> = tracked_all.iter().map(|t| t.id.clone()).collect();
    let (verified, relay_state) = verify_blocking(app, body, expected)
        .await
        .map_err(AcsError::Unverified)?;
    drop(permit);
    // The request the verified (signed) InResponseTo answers, not merely the first cookie.
    let tracked = match &verified.in_response_to {
        Some(irt) => tracked_all.into_iter().find(|t| &t.id == irt),
        None => tracked_all.into_iter().next(),
    };
    if verified.sha1 {
        app.metrics.sha1_login();
        tracing::warn!(
            target: "samlgate::login", request_id = rid, assertion_id = %verified.assertion_id,
            "login signed with SHA-1: {}", crate::config::SHA1_WARNING
        );
    }

    // The rest writes the store and waits for its flush: on a blocking thread too, so the
    // async workers keep serving and the flushes of concurrent logins can group (one fsync
    // for all logins waiting, `SledStore::flush`).
    let (app2, rid2) = (app.clone(), rid.to_string());
    tokio::task::spawn_blocking(move || {
        decide(&app2, verified, tracked, relay_state, &headers, lang, &rid2)
    })
    .await
    .map_err(|e| AcsError::Post(Refusal::new(Reason::Internal, format!("login task: {e}"))))?
}

/// Form and base64 decoding, decryption and verification, on a blocking thread: a large body
/// costs ~1 ms to decode, so a flood of big invalid posts is bounded by the slots too.
async fn verify_blocking(
    app: &Arc<App>,
    body: bytes::Bytes,
    expected: Vec<String>,
) -> Result<(Verified, Option<String>), Refusal> {
    let idp = app.idp();
    let cfg = app.cfg.clone();
    let keys = app.keys.read().expect("keys lock").clone();
    tokio::task::spawn_blocking(move || {
        let (saml_response, relay_state) = parse_form(&body)?;
        let xml = decode_saml_response(&saml_response)?;
        drop(saml_response);
        let decrypt_keys: Vec<DecryptKey> = keys
            .decrypting(cfg.retired_grace_hours, chrono::Utc::now().timestamp())
            .map(|k| DecryptKey {
                id: &k.id,
                key: &k.key,
                cert: &k.cert,
            })
            .collect();
        let ids: Vec<&str> = expected.iter().map(String::as_str).collect();
        let exp = Expectations {
            decrypt_keys: &decrypt_keys,
            require_encryption: cfg.require_encryption,
            idp: &idp,
            sp_entity_id: &cfg.sp_entity_id,
            acs_url: &cfg.acs_url(),
            skew: chrono::Duration::seconds(cfg.clock_skew_seconds),
            max_issue_delay: chrono::Duration::seconds(cfg.max_issue_delay_seconds),
            allow_unsolicited: cfg.allow_unsolicited,
            allow_sha1: cfg.allow_sha1,
            expected_request_ids: &ids,
            now: chrono::Utc::now(),
        };
        let v = verify_response(&xml, &exp);
        // Free the document on this thread, not the async one.
        drop(xml);
        v.map(|v| (v, relay_state))
    })
    .await
    .map_err(|e| Refusal::new(Reason::Internal, format!("verification task: {e}")))?
}

/// After verification, the login pipeline (crate::login): replay record, request
/// consumption, the decision on one account snapshot, and the one commit or the page it calls
/// for. Blocking (store reads, the commit's flush).
fn decide(
    app: &Arc<App>,
    verified: Verified,
    tracked: Option<authn::TrackedRequest>,
    relay_state: Option<String>,
    headers: &hyper::HeaderMap,
    lang: Lang,
    rid: &str,
) -> Result<Accepted, AcsError> {
    let idp = app.idp();
    let profile = map_profile(&app.cfg.attributes, &verified.name_id, &verified.attributes)
        .map_err(|refusal| AcsError::Login {
            account_id: verified.name_id.clone(),
            refusal,
        })?;
    let account_id = profile.account_id.clone();
    let refused = |refusal: Refusal| AcsError::Login {
        account_id: account_id.clone(),
        refusal,
    };
    let signed = verified.signed.as_str();
    // The assertion is consumed now, whatever the decision: record it before anything else.
    let fresh = login::record_replay(&*app.store, verified, &idp.entity_id, profile)
        .map_err(|e| refused(super::login::login_refusal(e)))?;
    let relay = match consume_request(app, fresh.verified(), tracked.as_ref()).map_err(refused)? {
        Some(kept) => kept,
        None => relay_state_path(app, relay_state.as_deref(), rid),
    };
    let decision = fresh
        .admit(
            &*app.store,
            &app.cfg,
            relay,
            super::auth::session_ids(app, headers),
        )
        .map_err(|e| refused(super::login::login_refusal(e)))?;
    let (mut resp, outcome) = match decision {
        Decision::Proceed(a) => (
            super::login::finish(app, a, Vec::new()).map_err(refused)?,
            Outcome::Success,
        ),
        Decision::NeedsConsent(a) => (
            consent::start(app, a.login, a.link_to, lang).map_err(refused)?,
            Outcome::NeedsConsent,
        ),
        Decision::NeedsApplication(need, login) => {
            // Only the replay entry (and the request) were written; `admit` made them durable.
            (
                super::login::application_page(app, lang, need, &login.profile, rid),
                Outcome::NeedsApplication,
            )
        }
        Decision::Blocked(by) => (super::login::blocked_page(lang, by, rid), Outcome::Blocked),
    };
    if tracked.is_some() {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&super::sso::request_cookie(app, "", 0))
        {
            resp.headers_mut().append(hyper::header::SET_COOKIE, v);
        }
    }
    Ok(Accepted {
        resp,
        account_id,
        outcome,
        signed,
    })
}

/// A solicited response consumes its request: a second response to it is refused. Its return
/// path (kept server-side) is returned; RelayState decides only IdP-initiated logins (`None`).
fn consume_request(
    app: &App,
    verified: &Verified,
    tracked: Option<&authn::TrackedRequest>,
) -> Result<Option<String>, Refusal> {
    let Some(irt) = &verified.in_response_to else {
        return Ok(None);
    };
    let t = tracked.filter(|t| &t.id == irt).ok_or_else(|| {
        Refusal::new(
            Reason::InResponseToUnknown,
            format!("InResponseTo {irt} has no request in this browser"),
        )
    })?;
    // Recorded only now, after the response verified: refused responses burn nothing.
    match authn::answer_once(&*app.store, t, chrono::Utc::now().timestamp()) {
        Ok(true) => Ok(Some(t.return_to.clone())),
        Ok(false) => Err(Refusal::new(
            Reason::InResponseToUnknown,
            format!("request {irt} already answered"),
        )),
        Err(e) => Err(super::login::store_refusal(e)),
    }
}

/// The return path an IdP-initiated login's RelayState asks for; `/` (and a log line saying
/// why) when it is not a path on this origin.
fn relay_state_path(app: &App, relay_state: Option<&str>, rid: &str) -> String {
    crate::return_path::from_relay_state(relay_state, &app.cfg.public_url).unwrap_or_else(|why| {
        let shown: String = relay_state.unwrap_or("").chars().take(200).collect();
        let origin = match &why {
            crate::return_path::Refused::OtherOrigin(o) => o.as_str(),
            crate::return_path::Refused::NotAPath => "",
        };
        tracing::warn!(
            target: "samlgate::login", request_id = rid, reason = why.code(), origin,
            relay_state = ?shown, public_url = %app.cfg.public_url,
            "RelayState not used; landing on /"
        );
        "/".into()
    })
}

async fn read_body(
    app: &App,
    headers: &hyper::HeaderMap,
    req: Request<Incoming>,
) -> Result<bytes::Bytes, Refusal> {
    let limit = app.cfg.max_body_bytes;
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(Refusal::new(
                Reason::BodyTooLarge,
                format!("Content-Length {len} > {limit}"),
            ));
        }
    }
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(Refusal::new(
            Reason::BadRequest,
            format!("Content-Type {ct:?}; the POST binding sends a form"),
        ));
    }
    let body = tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| Refusal::new(Reason::BadRequest, "body not received within 30 s"))?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            Refusal::new(Reason::BodyTooLarge, format!("body over {limit} bytes"))
        } else {
            Refusal::new(Reason::BadRequest, format!("body: {e}"))
        }
    })?
    .to_bytes();
    Ok(body)
}

/// Exactly one SAMLResponse, at most one RelayState.
pub fn parse_form(body: &[u8]) -> Result<(String, Option<String>), Refusal> {
    let mut saml = None;
    let mut relay = None;
    for pair in body.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let slot = match form_decode(k)?.as_str() {
            "SAMLResponse" => &mut saml,
            "RelayState" => &mut relay,
            _ => continue,
        };
        if slot.is_some() {
            return Err(Refusal::new(
                Reason::BadRequest,
                format!("{} given twice", String::from_utf8_lossy(k)),
            ));
        }
        *slot = Some(form_decode(v)?);
    }
    let saml = saml
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::new(Reason::BadRequest, "no SAMLResponse"))?;
    if relay.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(Refusal::new(
            Reason::BadRequest,
            "RelayState over 1024 bytes",
        ));
    }
    Ok((saml, relay))
}

/// One `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` a byte, and
/// the result must be UTF-8 (no lossy replacement: a mangled value is refused, not guessed).
/// Written out because the general form parser cost ~0.3 M instructions per 10 KB login post.
fn form_decode(raw: &[u8]) -> Result<String, Refusal> {
    let out =
        form_bytes(raw).ok_or_else(|| Refusal::new(Reason::BadRequest, "bad %-escape in form"))?;
    String::from_utf8(out).map_err(|_| Refusal::new(Reason::BadRequest, "form field not UTF-8"))
}

/// `+` is a space, `%XX` a byte; `None` for a bad escape. The runs between escapes are copied
/// whole: a SAMLResponse is ~10 KB of base64 with an escape every ~30 bytes, and a per-byte
/// loop cost ~15 instructions a byte (callgrind, bench/RESULTS.md).
fn form_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = memchr::memchr2(b'%', b'+', rest) {
        out.extend_from_slice(&rest[..i]);
        if rest[i] == b'+' {
            out.push(b' ');
            rest = &rest[i + 1..];
        } else {
            let (h, l) = (hex(rest.get(i + 1))?, hex(rest.get(i + 2))?);
            out.push((h * 16 + l) as u8);
            rest = &rest[i + 3..];
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_needs_one_saml_response() {
        assert!(parse_form(b"RelayState=%2F").is_err());
        assert!(parse_form(b"SAMLResponse=a&SAMLResponse=b").is_err());
        let (s, r) = parse_form(b"SAMLResponse=abc%2B&RelayState=%2Fx").unwrap();
        assert_eq!(s, "abc+");
        assert_eq!(r.as_deref(), Some("/x"));
        // `+` is a space, unknown fields are skipped, a field without `=` is empty.
        let (s, r) = parse_form(b"x=1&SAMLResponse=a+b%3D%3d&RelayState").unwrap();
        assert_eq!(s, "a b==");
        assert_eq!(r.as_deref(), Some(""));
        // Broken escapes and non-UTF-8 are refused, not replaced.
        assert!(parse_form(b"SAMLResponse=ab%2").is_err());
        assert!(parse_form(b"SAMLResponse=ab%zz").is_err());
        assert!(parse_form(b"SAMLResponse=%ff%fe").is_err());
        assert!(parse_form(b"SAMLRespons%65=abc").is_ok());
        assert!(parse_form(b"SAMLResponse=ab%").is_err());
        assert!(parse_form(b"SAMLResponse=%2").is_err());
        assert_eq!(parse_form(b"SAMLResponse=+%2B+%41").unwrap().0, " + A");
    }

    /// The run-copying decoder agrees with a byte-at-a-time one on long mixed values.
    #[test]
    fn form_decode_matches_a_bytewise_decoder() {
        fn bytewise(raw: &[u8]) -> Option<Vec<u8>> {
            let (mut out, mut i) = (Vec::new(), 0);
            while i < raw.len() {
                match raw[i] {
                    b'+' => out.push(b' '),
                    b'%' => {
                        let h = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                        out.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            Some(out)
        }
        let parts: [&[u8]; 9] = [
            b"abc", b"%2B", b"+", b"%2f", b"%3D%3D", b"xyz0189", b"%", b"%4", b"%0A",
        ];
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut raw = Vec::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                raw.extend_from_slice(parts[(seed >> 33) as usize % parts.len()]);
            }
            assert_eq!(
                form_bytes(&raw),
                bytewise(&raw),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    /// Base64 as one line or wrapped (CR LF, spaces) decodes alike; non-base64 is refused.
    #[test]
    fn saml_response_base64_wrapped_or_not() {
        let xml = "<samlp:Response ID=\"_x\">東京</samlp:Response>".repeat(9);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &xml);
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n ");
        assert_eq!(decode_saml_response(&b64).unwrap(), xml);
        assert_eq!(decode_saml_response(&wrapped).unwrap(), xml);
        assert!(decode_saml_response(&format!("{b64}*")).is_err());
        assert!(decode_saml_response(&b64[1..]).is_err());
    }
}
