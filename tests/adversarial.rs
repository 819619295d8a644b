//! Adversarial ACS suite (issue #7 item 4): forgeries built from genuinely signed responses.
//!
//! Every document comes from `tests/support/saml_attacks.py` (one python run per test function):
//! a response signed with the test IdP key (signxml, or the xmlsec1 CLI on a template when the
//! attack needs an unusual SignedInfo), then mutated. Where the attack relies on a signature
//! that still verifies after the mutation, the python side proves it first with a naive
//! verifier (and the xmlsec1 CLI where that applies) and refuses to emit a broken forgery.
//!
//! Each refusal is checked by `common::expect_refusals`: 4xx, the expected
//! `X-Samlgate-Reason`, no `samlgate=` cookie, `samlgate_sessions_live` unchanged,
//! `/healthz` still 200. Each function also posts an unmutated control that must be accepted,
//! so a refusal cannot come from a harness mistake.
//!
//! Already covered by tests/acs.rs `refuses_signature_attacks` (not repeated here): XSW3
//! (xsw-evil-first, xsw-evil-after), XSW4 inside the Subject, XSW7 (xsw-evil-in-extensions),
//! XSW8 (xsw-assertion-in-object), the signed Response in an evil one's Extensions, two signed
//! Assertions, Assertion + EncryptedAssertion, key substitution, tampered NameID;
//! `refuses_malformed_input`: DOCTYPE, XXE, billion laughs, oversize body, 20000-deep nesting.
//!
//! Run: cargo test --test adversarial (-- --nocapture prints "case ...: status N reason R").

mod common;

use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    accepted, accepted_as_or_refused, expect_refusals, form_encode, run_support, userinfo_json,
    Failures, Gateway, Json, Opts,
};

const NAMEID: &str = "GM0012345";
const XSW: &[&str] = &["assertion_count", "signature_invalid"];
const SIG: &[&str] = &["signature_invalid"];
/// A SignatureMethod/DigestMethod off the allow-list (the log names it).
const ALG: &[&str] = &["signature_algorithm_refused"];
const COUNT: &[&str] = &["assertion_count"];
const BAD_XML: &[&str] = &["bad_xml"];
/// Expected outcome "accepted as NAMEID" (controls).
const ACCEPTED: &[&str] = &[];

/// (saml_attacks.py case, title, expected reasons or ACCEPTED)
type Row = (&'static str, &'static str, &'static [&'static str]);

/// One document made by saml_attacks.py.
struct Made {
    case: String,
    b64: String,
    /// form body size the python side computed (`SAMLResponse=` + form-encoded base64)
    body: usize,
}

/// Runs saml_attacks.py once for all `cases` (with this gateway's IdP key, SP entity, ACS).
fn make(gw: &Gateway, cases: &[&str], extra: &[OsString]) -> Vec<Made> {
    let mut args = gw.idp_args();
    args.extend(extra.iter().cloned());
    for c in cases {
        args.push("--case".into());
        args.push(c.into());
    }
    let out = String::from_utf8(run_support("saml_attacks.py", &args)).expect("utf-8 output");
    let made: Vec<Made> = out
        .lines()
        .map(|l| {
            let j = Json::parse(l).unwrap_or_else(|e| panic!("saml_attacks.py line ({e}): {l}"));
            let s = |k: &str| j.str(k).unwrap_or_default().to_string();
            let body = match j.get("body") {
                Some(Json::Num(n)) => *n as usize,
                _ => 0,
            };
            eprintln!("made {}: {}", s("case"), s("notes"));
            Made {
                case: s("case"),
                b64: s("b64"),
                body,
            }
        })
        .collect();
    let got: Vec<&str> = made.iter().map(|m| m.case.as_str()).collect();
    assert_eq!(got, cases, "saml_attacks.py answered other cases");
    made
}

/// Posts every row: controls must log in as NAMEID, the rest must be refused.
fn run_table(gw: &Gateway, rows: &[Row], extra: &[OsString], f: &mut Failures) {
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let made = make(gw, &ids, extra);
    for ((_, title, expected), m) in rows.iter().zip(made) {
        if expected.is_empty() {
            control(gw, title, &m.b64, f);
        } else {
            expect_refusals(gw, &[(title, m.b64, expected)], f);
        }
    }
}

fn control(gw: &Gateway, title: &str, b64: &str, f: &mut Failures) {
    let r = gw.post_acs(b64, None);
    eprintln!(
        "case {title:?}: status {} reason {:?}",
        r.status,
        r.reason()
    );
    if let Some(cookie) = accepted(gw, title, &r, f) {
        match userinfo_json(gw, &cookie) {
            Err(e) => f.check(title, false, || e),
            Ok(j) => f.check(title, j.str("user") == Some(NAMEID), || {
                format!("control logged in as {:?}, not {NAMEID}", j.get("user"))
            }),
        }
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn xsw_family_of_on_breaking_saml() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    // Somorovsky et al., "On Breaking SAML: Be Whoever You Want to Be" (USENIX Security 2012),
    // numbered as in SAML Raider. XSW3, XSW7 and XSW8 are in tests/acs.rs (see the module doc).
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-genuine", "control: the unmodified signed response", ACCEPTED),
        ("xsw1", "XSW1: evil Response keeps the Response signature, the signed original in its ds:Signature/ds:Object", XSW),
        ("xsw1-both", "XSW1 with the original's Assertion signed as well", XSW),
        ("xsw2", "XSW2: evil Response, the signed original just before its ds:Signature (detached)", XSW),
        // XSW3 (evil Assertion before the signed one): acs.rs "xsw-evil-first"
        ("xsw4", "XSW4: the signed Assertion as the last child of an unsigned evil Assertion", XSW),
        ("xsw5", "XSW5: signed Assertion altered in place (signature kept), unsigned original appended to the Response", XSW),
        ("xsw6", "XSW6: signed Assertion altered in place, unsigned original inside its ds:Signature", XSW),
        // XSW7 (evil Assertion in samlp:Extensions): acs.rs "xsw-evil-in-extensions"
        // XSW8 (unsigned original in ds:Object of the altered Assertion): acs.rs "xsw-assertion-in-object"
    ];
    run_table(&gw, &rows, &[], &mut f);
    f.finish(&gw);
}

#[test]
fn hmac_object_references_and_duplicate_ids() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-genuine", "control: the unmodified signed response", ACCEPTED),
        // HMAC keyed with what the SP holds (the IdP certificate): forgeable by anyone
        ("hmac-pem-assertion", "HMAC-SHA256 keyed with the IdP certificate PEM, Assertion", ALG),
        ("hmac-pem-response", "HMAC-SHA256 keyed with the IdP certificate PEM, Response", ALG),
        ("hmac-der-assertion", "HMAC-SHA256 keyed with the IdP certificate DER, Assertion", ALG),
        ("hmac-der-response", "HMAC-SHA256 keyed with the IdP certificate DER, Response", ALG),
        // what the Reference covers is a copy inside ds:Object, not the Assertion
        ("ref-into-object-response", "evil Assertion's signature references an IdP-signed Response (no Assertion) in ds:Object", &["signature_invalid", "assertion_count"]),
        ("ref-into-object-data", "evil Assertion carries an enveloping signature over its own ds:Object", SIG),
        // two elements with one ID: which one the digest and the reader resolve
        ("dup-id-assertion-evil-first", "duplicate ID: unsigned evil Assertion with the signed one's ID, first", XSW),
        ("dup-id-assertion-evil-after", "duplicate ID: unsigned evil Assertion with the signed one's ID, after", XSW),
        ("dup-id-extensions-before", "duplicate ID: samlp:Extensions (evil NameID) with the Assertion's ID, before it", SIG),
        ("dup-id-extensions-after", "duplicate ID: samlp:Extensions (evil NameID) with the Assertion's ID, after it", SIG),
        ("dup-id-response-before", "duplicate ID: evil Response with a signed Response's ID, the signed one in Extensions before the Assertion", SIG),
        ("dup-id-response-after", "duplicate ID: evil Response with a signed Response's ID, the signed one in Extensions at the end", SIG),
    ];
    run_table(&gw, &rows, &[], &mut f);
    f.finish(&gw);
}

/// Genuinely signed (IdP key, xmlsec1 CLI) with transforms outside the SAML profile
/// (SAML core 5.4.4: enveloped signature + exclusive C14N). What they make the verifier digest
/// is not the Assertion element the prescan counted: an XSLT or XPath result, or for base64
/// bytes that are not in the document tree at all.
#[test]
fn unexpected_transforms_are_refused() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-template", "control: Assertion signed through the same xmlsec1 template path, usual transforms", ACCEPTED),
        ("xform-xslt", "XSLT transform (identity stylesheet) in the Reference", SIG),
        ("xform-xpath", "XPath filter transform in the Reference", SIG),
        ("xform-xpath2", "XPath-Filter2 (subtract) transform in the Reference", SIG),
        ("xform-base64", "base64 transform: the signed bytes are the decoded ds:Object, the document's only Assertion is evil", SIG),
        ("xform-no-enveloped", "enveloped transform missing (detached signature moved into the Assertion)", SIG),
    ];
    run_table(&gw, &rows, &[], &mut f);
    f.finish(&gw);
}

/// Records the first line of every HTTP request made to it.
struct Listener {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind listener");
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 512];
                        let n = s.read(&mut buf).unwrap_or(0);
                        let line = String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or("<connection without request>")
                            .to_string();
                        seen2.lock().unwrap().push(line);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener { port, seen, stop }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
    fn hits(&self, path: &str) -> Vec<String> {
        let want = format!(" /{path}");
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&want))
            .cloned()
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What an unsigned Reference could make the gateway do, and how the test sees it.
enum Probe {
    /// an HTTP request for this path at the listener
    Http(&'static str),
    /// the named pipe opened for reading
    Fifo,
    /// the xsl:message marker in the server log
    Marker,
}

/// Posts while watching `fifo`: true if the gateway opened it for reading (it is then given
/// EOF at once, so its read ends).
fn post_watching_fifo(gw: &Gateway, b64: &str, fifo: &Path) -> (common::Resp, bool) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000; // Linux: a writer's open fails (ENXIO) while no reader waits
    std::thread::scope(|s| {
        let h = s.spawn(|| gw.post_acs(b64, None));
        let mut opened = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !h.is_finished() && Instant::now() < deadline {
            if std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(fifo)
                .is_ok()
            {
                opened = true; // dropped here: the reader sees EOF
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (h.join().expect("post thread"), opened)
    })
}

/// xmlsec processes every Reference (dereference, transforms, digest) before it checks the
/// SignatureValue, so none of this may depend on a valid signature. Each document is a genuine
/// response whose signature got an extra, unsigned Reference (or KeyInfo) pointing outside the
/// document; it must be refused and nothing outside may be touched.
#[test]
fn unsigned_references_are_never_dereferenced() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let listener = Listener::start();
    let fifo = gw.dir.path().join("reference.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success(), "mkfifo {}", fifo.display());
    let marker = format!("XSLT-RAN-{}-{}", gw.port, std::process::id());
    let extra: Vec<OsString> = vec![
        "--remote-url".into(),
        listener.url().into(),
        "--fifo".into(),
        fifo.clone().into(),
        "--marker".into(),
        marker.clone().into(),
    ];
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Probe)> = vec![
        ("sidefx-remote-reference", "Reference URI http://127.0.0.1:PORT/reference (SSRF before any signature check)", Probe::Http("reference")),
        ("sidefx-file-reference", "Reference URI file:///.../reference.fifo (local file read; /dev/zero would exhaust memory)", Probe::Fifo),
        ("sidefx-xslt", "XSLT transform with xsl:message in an unsigned Reference (attacker stylesheet executed)", Probe::Marker),
        ("sidefx-xslt-document", "XSLT document('http://...') in an unsigned Reference", Probe::Http("xslt-document")),
        ("sidefx-retrieval-method", "KeyInfo RetrievalMethod to http://127.0.0.1:PORT/retrieval-method", Probe::Http("retrieval-method")),
    ];
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let made = make(&gw, &ids, &extra);
    for ((_, title, probe), m) in rows.iter().zip(made) {
        let before = gw.sessions_live();
        let (r, fifo_opened) = match probe {
            Probe::Fifo => post_watching_fifo(&gw, &m.b64, &fifo),
            _ => (gw.post_acs(&m.b64, None), false),
        };
        eprintln!(
            "case {title:?}: status {} reason {:?}",
            r.status,
            r.reason()
        );
        let mut p = gw.refusal_problems(&r, SIG, before);
        match probe {
            Probe::Http(path) => {
                std::thread::sleep(Duration::from_millis(200));
                let hits = listener.hits(path);
                if !hits.is_empty() {
                    p.push(format!(
                        "the gateway fetched {}{path}: {hits:?}",
                        listener.url()
                    ));
                }
            }
            Probe::Fifo => {
                if fifo_opened {
                    p.push(format!("the gateway opened {} for reading", fifo.display()));
                }
            }
            Probe::Marker => {
                if gw.log().contains(&marker) {
                    p.push(format!(
                        "the attacker's XSLT ran: its xsl:message {marker:?} is in the server log"
                    ));
                }
            }
        }
        f.add(title, p);
    }
    f.finish(&gw);
}

fn sp_cert(gw: &Gateway) -> PathBuf {
    let dir = gw.dir.path().join("sp-keys");
    std::fs::read_dir(&dir)
        .expect("sp-keys")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "crt"))
        .unwrap_or_else(|| panic!("no SP certificate in {}", dir.display()))
}

#[test]
fn encrypted_assertion_mixes_and_namespace_tricks() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let extra = vec!["--sp-cert".into(), sp_cert(&gw).into()];
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-encrypted", "control: a signed Assertion encrypted to the SP key", ACCEPTED),
        // EncryptedAssertion: real ciphertext to the SP key, holding an unsigned evil Assertion
        ("enc-before-plain", "EncryptedAssertion (evil, unsigned) before a signed plain Assertion", COUNT),
        ("enc-after-plain", "signed plain Assertion, then an EncryptedAssertion (evil, unsigned)", COUNT),
        ("enc-in-response-signature", "EncryptedAssertion (evil) in the Response signature's ds:Object (signature still valid)", COUNT),
        ("enc-evil-only", "only an EncryptedAssertion with an unsigned evil Assertion", SIG),
        ("enc-xsw-inside", "EncryptedAssertion whose plaintext is XSW4 (evil Assertion wrapping the signed one)", &["decrypt_failed", "assertion_count", "bad_xml"]),
        // namespace re-binding
        ("ns-default-assertion-first", "evil Assertion in the SAML namespace by default xmlns (no prefix), before the signed one", COUNT),
        ("ns-lookalike-default-wraps-signed", "look-alike Assertion in a foreign default namespace wrapping the signed one", COUNT),
        ("ns-lookalike-prefixed-wraps-signed", "look-alike saml:Assertion (saml re-bound to a foreign namespace) wrapping the signed one", COUNT),
        ("ns-samlp-rebound-root", "root samlp:Response with samlp re-bound to a foreign namespace, wrapping the signed Response", &["not_a_response"]),
        ("ns-ds-rebound", "ds prefix of the Assertion's signature re-bound to a foreign namespace", SIG),
        ("ns-saml-rebound-inside", "saml prefix re-bound inside the signed Assertion (on its Subject)", SIG),
    ];
    run_table(&gw, &rows, &extra, &mut f);
    f.finish(&gw);
}

/// Signed value `GM0012345.evil`, split by markup that C14N maps back to the same string (or,
/// for processing instructions and #WithComments, signed as-is). Accepting it as anything but
/// the whole value is the bug; refusing it is fine. The PI added after signing changes the
/// signed bytes and must be refused.
#[test]
fn text_node_injection_never_truncates() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let whole = format!("{NAMEID}.evil");
    #[rustfmt::skip]
    let rows: Vec<(&str, &str)> = vec![
        ("text-pi-signed", "processing instruction inside NameID/gmisAccountId, signed as-is"),
        ("text-comments-many", "three comments (G<!--1-->M0012345<!--2-->.evil<!--3-->) added after signing"),
        ("text-hex-charref", "hex character reference &#x2E; added after signing"),
        ("text-first-charref", "first character as &#71; added after signing"),
        ("text-empty-cdata", "empty CDATA section in the middle, added after signing"),
        ("text-comment-cdata-mix", "comment + CDATA + text mixed, added after signing"),
        ("text-with-comments-c14n", "signed with exc-c14n#WithComments, comment inside the value is signed"),
    ];
    let mut ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    ids.push("text-pi-after-signing");
    let made = make(&gw, &ids, &os(&["--nameid", &whole]));
    for ((_, title), m) in rows.iter().zip(&made) {
        accepted_as_or_refused(&gw, title, &m.b64, &whole, &mut f);
    }
    let pi = &made[rows.len()].b64;
    expect_refusals(
        &gw,
        &[(
            "processing instruction added after signing (C14N keeps PIs)",
            pi.clone(),
            SIG,
        )],
        &mut f,
    );
    f.finish(&gw);
}

#[test]
fn odd_encodings_huge_and_deep_documents() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let limit = Opts::default().max_body_bytes.expect("default body limit") as usize;
    let extra = os(&["--body-limit", &limit.to_string()]);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-genuine", "control: the unmodified signed response", ACCEPTED),
        // the same signed document re-encoded: xmlsec1 verifies each (checked in python)
        ("enc-utf16le-bom", "UTF-16LE with BOM", BAD_XML),
        ("enc-utf16be-bom", "UTF-16BE with BOM", BAD_XML),
        ("enc-utf16le-nobom", "UTF-16LE without BOM (declaration says UTF-16)", BAD_XML),
        ("enc-utf16be-nobom", "UTF-16BE without BOM (declaration says UTF-16)", BAD_XML),
        ("enc-latin1", "ISO-8859-1 re-encoding (other characters as references)", BAD_XML),
        ("enc-latin1-claimed", "UTF-8 bytes under an ISO-8859-1 declaration (two readings of the Japanese attributes)", BAD_XML),
        ("enc-shift-jis", "Shift_JIS re-encoding", BAD_XML),
        ("enc-utf7", "UTF-7 declaration; a comment that a UTF-7 reader sees as an evil Assertion", BAD_XML),
        ("enc-utf8-bom-utf16-decl", "UTF-8 BOM with a UTF-16 declaration", BAD_XML),
        // size and depth
        ("huge-xsw3", "XSW3 with the evil Assertion padded to just under the body limit", XSW),
        ("huge-tampered", "~190 KB genuinely signed Assertion, NameID changed after signing, just under the limit", SIG),
        ("deep-signed", "70 nested elements inside a genuinely signed AttributeValue", BAD_XML),
        ("deep-extensions", "65 nested elements in unsigned samlp:Extensions", BAD_XML),
    ];
    let mut ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    ids.extend(["enc-utf8-bom", "huge-over-limit"]);
    let made = make(&gw, &ids, &extra);
    for ((id, _, _), m) in rows.iter().zip(&made) {
        if id.starts_with("huge-") {
            f.check(id, m.body < limit && m.body > limit - 4000, || {
                format!(
                    "form body {} bytes is not just under the {limit} limit",
                    m.body
                )
            });
        }
    }
    for ((_, title, expected), m) in rows.iter().zip(&made) {
        if expected.is_empty() {
            control(&gw, title, &m.b64, &mut f);
        } else {
            expect_refusals(&gw, &[(title, m.b64.clone(), expected)], &mut f);
        }
    }
    // a UTF-8 BOM is allowed by XML 1.0: accepting the genuine document is fine
    let bom = &made[rows.len()];
    accepted_as_or_refused(
        &gw,
        "UTF-8 BOM before a genuine response",
        &bom.b64,
        NAMEID,
        &mut f,
    );

    // just over the limit: 413 before any parsing (raw socket: the server may answer early)
    let over = &made[rows.len() + 1];
    let title = "genuinely signed response just over the body limit";
    f.check(title, over.body > limit, || {
        format!("form body {} bytes is not over {limit}", over.body)
    });
    let body = format!("SAMLResponse={}", form_encode(&over.b64)).into_bytes();
    let before = gw.sessions_live();
    let r = gw.post_raw("/saml/acs", "application/x-www-form-urlencoded", body);
    eprintln!(
        "case {title:?}: status {} reason {:?}",
        r.status,
        r.reason()
    );
    let mut p = gw.refusal_problems(&r, &["body_too_large"], before);
    if r.status != 413 {
        p.push(format!("status {} != 413", r.status));
    }
    f.add(title, p);
    f.finish(&gw);
}

#[test]
fn cve_inspired_cases() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("control-genuine", "control: the unmodified signed response", ACCEPTED),
        // CVE-2024-45409 (ruby-saml): the DigestValue is looked up by an XPath that an unsigned element also satisfies
        ("cve-2024-45409-signedinfo-in-extensions", "CVE-2024-45409: NameID tampered, fake ds:Signature/SignedInfo with its digest in Extensions (first in document order)", SIG),
        ("cve-2024-45409-digest-first-in-signature", "CVE-2024-45409: NameID tampered, fake ds:DigestValue as the first child of the real ds:Signature", SIG),
        ("cve-2024-45409-signedinfo-in-object", "CVE-2024-45409: NameID tampered, fake SignedInfo in the real signature's ds:Object", SIG),
        // CVE-2025-29775 (xml-crypto): DigestValue read from its first child node, a comment invisible to C14N
        ("cve-2025-29775-digest-comment", "CVE-2025-29775: NameID tampered, DigestValue = <!--fake-->real (SignedInfo still verifies)", SIG),
        // CVE-2025-29774 (xml-crypto): several SignedInfo, one checked against SignatureValue, another for the digests
        ("cve-2025-29774-signedinfo-fake-first", "CVE-2025-29774: NameID tampered, a second SignedInfo with the fake digest before the real one", SIG),
        ("cve-2025-29774-signedinfo-fake-second", "CVE-2025-29774: NameID tampered, a second SignedInfo with the fake digest after the real one", SIG),
        // CVE-2025-47949 (samlify): the signature validates one node, the application reads another
        ("cve-2025-47949-in-object", "CVE-2025-47949: valid Response signature, evil Assertion hidden in its ds:Object (first Assertion in document order)", COUNT),
        ("cve-2025-47949-in-keyinfo", "CVE-2025-47949: valid Response signature, evil Assertion hidden in its ds:KeyInfo", COUNT),
        // CVE-2025-25291/25292 (ruby-saml, REXML vs Nokogiri): here quick-xml (prescan) vs libxml2 (xmlsec)
        ("cve-2025-25291-nul-in-comment", "CVE-2025-25291: evil Assertion in a comment after a NUL byte (a comment to quick-xml, not XML to libxml2)", BAD_XML),
        ("cve-2025-25291-double-hyphen-comment", "CVE-2025-25291: '--!>' inside a comment hides an evil Assertion from XML readers, not from HTML-ish ones", BAD_XML),
        ("cve-2025-25291-lt-in-attribute", "CVE-2025-25291: evil Assertion markup inside an attribute value (raw '<')", BAD_XML),
        ("cve-2025-25291-duplicate-attribute", "CVE-2025-25291: the Response's ID attribute twice", BAD_XML),
        ("cve-2025-25292-xml-id", "CVE-2025-25292: evil element with xml:id = the signed Assertion's ID (an ID to libxml2 only)", SIG),
        ("cve-2025-25292-xmlns-undeclare", "CVE-2025-25292: xmlns:saml=\"\" (illegal undeclaration) around an evil saml:Assertion", BAD_XML),
        ("cve-2025-25292-cdata-hidden", "CVE-2025-25292: evil Assertion as CDATA text, the signed one removed", COUNT),
    ];
    run_table(&gw, &rows, &[], &mut f);
    f.finish(&gw);
}
