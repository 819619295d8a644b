//! `saml::decrypt::decrypt_in_place` against encrypted assertions made by independent
//! implementations: `tests/support/saml_encrypt.py` (python `cryptography`, hand-written XML)
//! and, for some cases, the xmlsec1 CLI. One python process makes every file.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samlgate::saml::decrypt::{decrypt_in_place, DecryptError, DecryptKey};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> PathBuf {
    let py = std::env::var_os("SAMLGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(".venv/bin/python"));
    assert!(
        py.exists(),
        "python venv not found at {}: run scripts/install-deps.sh",
        py.display()
    );
    py
}

/// The `saml` prefix bound on the root; a signed-looking Assertion with whitespace, a
/// ds:Signature declaring its own prefix, and non-ASCII text.
const RESP_A: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_resp1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z" Destination="https://gw.test/saml/acs" InResponseTo="_req1">
  <saml:Issuer>https://gmis-idp.test/idp</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <saml:Assertion ID="_assertion1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">
    <saml:Issuer>https://gmis-idp.test/idp</saml:Issuer>
    <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:Reference URI="#_assertion1"><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>BBBB</ds:SignatureValue></ds:Signature>
    <saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">GM0012345</saml:NameID></saml:Subject>
    <saml:AttributeStatement><saml:Attribute Name="displayName"><saml:AttributeValue>医療 太郎 &amp; co</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>
"##;

/// The `saml` prefix is not bound on the root: the Assertion declares it itself (first).
const RESP_B: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_resp2" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://gmis-idp.test/idp</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_assertion2" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://gmis-idp.test/idp</saml:Issuer><saml:Subject><saml:NameID>GM0099999</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#;

#[derive(Clone, Copy, PartialEq)]
enum Doc {
    A,
    B,
}

impl Doc {
    fn text(self) -> &'static str {
        match self {
            Doc::A => RESP_A,
            Doc::B => RESP_B,
        }
    }
    fn file(self) -> &'static str {
        match self {
            Doc::A => "resp_a.xml",
            Doc::B => "resp_b.xml",
        }
    }
    fn marks(self) -> [&'static str; 2] {
        match self {
            Doc::A => [">GM0012345</saml:NameID>", r#"ID="_assertion1""#],
            Doc::B => [">GM0099999</saml:NameID>", r#"ID="_assertion2""#],
        }
    }
}

#[derive(Debug)]
enum Expect {
    /// Decrypts with this key id. `original`: the result must equal the input Response.
    Ok {
        id: &'static str,
        original: bool,
    },
    NoKey,
    Rsa15,
    /// Unsupported, naming this string.
    Unsupported(&'static str),
}

struct Case {
    name: String,
    doc: Doc,
    certs: Vec<&'static str>,
    args: Vec<String>,
    keys: Vec<&'static str>,
    expect: Expect,
}

fn case(name: impl Into<String>, doc: Doc, certs: &[&'static str], args: &[&str]) -> Case {
    Case {
        name: name.into(),
        doc,
        certs: certs.to_vec(),
        args: args.iter().map(|s| s.to_string()).collect(),
        keys: vec!["sp1"],
        expect: Expect::Ok {
            id: "sp1",
            original: false,
        },
    }
}

impl Case {
    fn keys(mut self, k: &[&'static str]) -> Self {
        self.keys = k.to_vec();
        self
    }
    fn expect(mut self, e: Expect) -> Self {
        self.expect = e;
        self
    }
}

fn cases() -> Vec<Case> {
    let kts = [
        "rsa-oaep-mgf1p",
        "rsa-oaep-mgf1p-sha256",
        "xmlenc11-rsa-oaep-sha256",
    ];
    let datas = [
        "aes128-cbc",
        "aes192-cbc",
        "aes256-cbc",
        "aes128-gcm",
        "aes192-gcm",
        "aes256-gcm",
    ];
    let styles = [
        ("keyinfo", "local"),
        ("sibling", "root"),
        ("keyinfo", "default-ns"),
        ("sibling-noref", "ancestor"),
        ("keyinfo", "root"),
        ("sibling", "default-ns"),
    ];
    let mut out = Vec::new();
    for (i, kt) in kts.iter().enumerate() {
        for (j, data) in datas.iter().enumerate() {
            for (k, (placement, decl)) in styles.iter().enumerate() {
                let n = i + j + k;
                let doc = if n % 2 == 0 { Doc::A } else { Doc::B };
                let plaintext = if n % 3 == 0 { "lxml" } else { "raw" };
                // Raw plaintext and no declaration added to the root: the decrypted document
                // is the input Response, byte for byte.
                let original = plaintext == "raw" && *decl != "root";
                out.push(
                    case(
                        format!("{kt}-{data}-{placement}-{decl}-{plaintext}"),
                        doc,
                        &["sp1"],
                        &[
                            "--key-transport",
                            kt,
                            "--data",
                            data,
                            "--placement",
                            placement,
                            "--ds-decl",
                            decl,
                            "--plaintext",
                            plaintext,
                        ],
                    )
                    .expect(Expect::Ok {
                        id: "sp1",
                        original,
                    }),
                );
            }
        }
    }
    let ok = |id| Expect::Ok { id, original: true };
    out.extend([
        // More OAEP parameters.
        case(
            "xmlenc11-defaults",
            Doc::A,
            &["sp1"],
            &[
                "--key-transport",
                "xmlenc11-rsa-oaep",
                "--data",
                "aes128-cbc",
            ],
        )
        .expect(ok("sp1")),
        case(
            "xmlenc11-sha512-mgf1sha384",
            Doc::B,
            &["sp1"],
            &[
                "--key-transport",
                "xmlenc11-rsa-oaep-sha512-mgf1sha384",
                "--data",
                "aes192-gcm",
                "--ds-decl",
                "default-ns",
            ],
        )
        .expect(ok("sp1")),
        case(
            "oaep-label",
            Doc::A,
            &["sp1"],
            &[
                "--oaep-label",
                "samlgate label",
                "--data",
                "aes256-cbc",
                "--placement",
                "sibling",
            ],
        )
        .expect(ok("sp1")),
        case(
            "oaep11-label",
            Doc::A,
            &["sp1"],
            &[
                "--key-transport",
                "xmlenc11-rsa-oaep-sha256",
                "--oaep-label",
                "x",
                "--data",
                "aes256-gcm",
            ],
        )
        .expect(ok("sp1")),
        case(
            "pkcs7-padding",
            Doc::A,
            &["sp1"],
            &["--pad", "pkcs7", "--data", "aes128-cbc"],
        )
        .expect(ok("sp1")),
        // Plaintext relying on the EncryptedAssertion's declaration of `saml`.
        case(
            "context-ns",
            Doc::B,
            &["sp1"],
            &["--strip-saml-decl", "--data", "aes128-gcm"],
        )
        .expect(ok("sp1")),
        case(
            "context-ns-default",
            Doc::B,
            &["sp1"],
            &[
                "--strip-saml-decl",
                "--data",
                "aes256-cbc",
                "--ds-decl",
                "default-ns",
                "--placement",
                "sibling",
            ],
        )
        .expect(ok("sp1")),
        // Key choice: encrypted to sp2, named in different ways; the key set is [sp1, sp2].
        case("hint-cert", Doc::A, &["sp2"], &["--hint", "cert"])
            .keys(&["sp1", "sp2"])
            .expect(ok("sp2")),
        case(
            "hint-keyname",
            Doc::A,
            &["sp2"],
            &["--hint", "keyname", "--key-name", "sp2"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        case(
            "hint-issuer-serial",
            Doc::A,
            &["sp2"],
            &["--hint", "issuer-serial"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        case(
            "hint-ski",
            Doc::A,
            &["sp2"],
            &["--hint", "ski", "--data", "aes128-gcm"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        case(
            "hint-none-fallback",
            Doc::A,
            &["sp2"],
            &["--hint", "none", "--data", "aes256-gcm"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        case(
            "hint-names-first-key",
            Doc::A,
            &["sp1"],
            &["--hint", "cert"],
        )
        .keys(&["sp2", "sp1"])
        .expect(ok("sp1")),
        case("wrong-then-right", Doc::A, &["sp1"], &["--hint", "none"])
            .keys(&["wrong", "sp1"])
            .expect(ok("sp1")),
        // Two EncryptedKeys (to sp1 and to sp2): the one naming its key is tried first.
        case(
            "two-recipients-hint-second",
            Doc::A,
            &["sp1", "sp2"],
            &["--hint", "none", "--hint", "cert"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        case(
            "two-recipients-no-hint",
            Doc::A,
            &["sp1", "sp2"],
            &["--hint", "none"],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp1")),
        case(
            "two-recipients-sibling",
            Doc::A,
            &["sp1", "sp2"],
            &[
                "--hint",
                "none",
                "--hint",
                "keyname",
                "--key-name",
                "x",
                "--key-name",
                "sp2",
                "--placement",
                "sibling",
            ],
        )
        .keys(&["sp1", "sp2"])
        .expect(ok("sp2")),
        // Failures.
        case(
            "wrong-key-only",
            Doc::A,
            &["sp1"],
            &["--data", "aes128-cbc"],
        )
        .keys(&["wrong"])
        .expect(Expect::NoKey),
        case(
            "wrong-key-only-gcm",
            Doc::A,
            &["sp1"],
            &["--data", "aes256-gcm", "--hint", "none"],
        )
        .keys(&["wrong", "sp2"])
        .expect(Expect::NoKey),
        case("rsa-1_5", Doc::A, &["sp1"], &["--key-transport", "rsa-1_5"]).expect(Expect::Rsa15),
        case(
            "rsa-1_5-sibling",
            Doc::A,
            &["sp1"],
            &[
                "--key-transport",
                "rsa-1_5",
                "--placement",
                "sibling",
                "--data",
                "aes128-gcm",
            ],
        )
        .expect(Expect::Rsa15),
        case(
            "tamper-data-cbc",
            Doc::A,
            &["sp1"],
            &["--tamper", "data", "--data", "aes128-cbc"],
        )
        .expect(Expect::NoKey),
        case(
            "tamper-last-cbc",
            Doc::A,
            &["sp1"],
            &["--tamper", "tag", "--data", "aes256-cbc"],
        )
        .expect(Expect::NoKey),
        case(
            "tamper-data-gcm",
            Doc::A,
            &["sp1"],
            &["--tamper", "data", "--data", "aes128-gcm"],
        )
        .expect(Expect::NoKey),
        case(
            "tamper-tag-gcm",
            Doc::A,
            &["sp1"],
            &["--tamper", "tag", "--data", "aes256-gcm"],
        )
        .expect(Expect::NoKey),
        case(
            "tamper-key",
            Doc::A,
            &["sp1"],
            &["--tamper", "key", "--data", "aes192-gcm"],
        )
        .expect(Expect::NoKey),
        case(
            "unknown-data-alg",
            Doc::A,
            &["sp1"],
            &[
                "--data-alg-uri",
                "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
            ],
        )
        .expect(Expect::Unsupported(
            "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
        )),
        case(
            "unknown-kt-alg",
            Doc::A,
            &["sp1"],
            &["--kt-alg-uri", "http://www.w3.org/2001/04/xmlenc#kw-aes128"],
        )
        .expect(Expect::Unsupported(
            "http://www.w3.org/2001/04/xmlenc#kw-aes128",
        )),
        // A second independent implementation: libxmlsec1 (it re-serialises the document, so
        // the expectation is its output with the original Assertion in place).
        case(
            "xmlsec1-aes128-cbc",
            Doc::A,
            &["sp1"],
            &["--engine", "xmlsec1", "--data", "aes128-cbc"],
        )
        .expect(Expect::Ok {
            id: "sp1",
            original: false,
        }),
        case(
            "xmlsec1-aes256-cbc",
            Doc::B,
            &["sp1"],
            &["--engine", "xmlsec1", "--data", "aes256-cbc"],
        )
        .expect(Expect::Ok {
            id: "sp1",
            original: false,
        }),
        case(
            "xmlsec1-aes128-gcm",
            Doc::A,
            &["sp1"],
            &["--engine", "xmlsec1", "--data", "aes128-gcm"],
        )
        .expect(Expect::Ok {
            id: "sp1",
            original: false,
        }),
        case(
            "xmlsec1-aes256-gcm",
            Doc::B,
            &["sp1"],
            &["--engine", "xmlsec1", "--data", "aes256-gcm"],
        )
        .keys(&["sp2", "sp1"])
        .expect(Expect::Ok {
            id: "sp1",
            original: false,
        }),
    ]);
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn decrypts_independent_encryptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut keys: Vec<(&'static str, PKey<Private>, X509)> = Vec::new();
    for id in ["sp1", "sp2", "wrong"] {
        let (k, c) = samlgate::keys::self_signed(id, 10).expect("key");
        fs::write(d.join(format!("{id}.crt")), c.to_pem().expect("pem")).expect("write cert");
        keys.push((id, k, c));
    }
    for doc in [Doc::A, Doc::B] {
        fs::write(d.join(doc.file()), doc.text()).expect("write response");
    }

    let cases = cases();
    let mut batch = String::new();
    for c in &cases {
        let mut line = vec![
            "--in".to_string(),
            d.join(c.doc.file()).display().to_string(),
            "--out".to_string(),
            d.join(format!("{}.xml", c.name)).display().to_string(),
            "--expected".to_string(),
            d.join(format!("{}.expected.xml", c.name))
                .display()
                .to_string(),
        ];
        for cert in &c.certs {
            line.push("--cert".into());
            line.push(d.join(format!("{cert}.crt")).display().to_string());
        }
        line.extend(c.args.iter().cloned());
        let quoted: Vec<String> = line.iter().map(|s| shell_quote(s)).collect();
        writeln!(batch, "{}", quoted.join(" ")).expect("fmt");
    }
    fs::write(d.join("batch.txt"), &batch).expect("write batch");
    let out = Command::new(python())
        .arg(Path::new(ROOT).join("tests/support/saml_encrypt.py"))
        .arg("batch")
        .arg(d.join("batch.txt"))
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "saml_encrypt.py batch failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut failures = Vec::new();
    let mut seen_ok = 0;
    for c in &cases {
        let enc = fs::read_to_string(d.join(format!("{}.xml", c.name))).expect("read output");
        assert!(
            enc.contains("EncryptedAssertion"),
            "{}: not encrypted",
            c.name
        );
        assert!(
            !enc.contains(c.doc.marks()[0]),
            "{}: NameID in the clear",
            c.name
        );
        let dks: Vec<DecryptKey> = c
            .keys
            .iter()
            .map(|want| {
                let (id, key, cert) = keys.iter().find(|(id, _, _)| id == want).expect("key id");
                DecryptKey { id, key, cert }
            })
            .collect();
        let got = decrypt_in_place(&enc, &dks);
        let problem: Option<String> = match (&c.expect, &got) {
            (Expect::Ok { id, original }, Ok((doc, got_id))) => {
                seen_ok += 1;
                let expected =
                    fs::read_to_string(d.join(format!("{}.expected.xml", c.name))).expect("read");
                if got_id != id {
                    Some(format!("key {got_id}, wanted {id}"))
                } else if *original && doc != c.doc.text() {
                    Some(format!("not the original document:\n{doc}"))
                } else if !*original && doc != &expected {
                    Some(format!(
                        "not the expected document:\n{doc}\n--- expected\n{expected}"
                    ))
                } else if !c.doc.marks().iter().all(|m| doc.contains(m)) {
                    Some(format!("NameID/ID missing:\n{doc}"))
                } else if doc.contains("EncryptedAssertion") || doc.contains("CipherValue") {
                    Some("encrypted parts left".into())
                } else {
                    // The caller's prescan accepts it as a plain, single assertion.
                    match samlgate::saml::prescan::prescan(doc) {
                        Ok(env) if !env.encrypted => None,
                        other => Some(format!("prescan: {other:?}")),
                    }
                }
            }
            (Expect::NoKey, Err(e @ DecryptError::NoKeyWorked { detail })) => {
                let shown = e.to_string();
                if ["padding", "OAEP", "GCM", "UTF-8", "tag"]
                    .iter()
                    .any(|w| shown.contains(w))
                    || detail.is_empty()
                {
                    Some(format!(
                        "NoKeyWorked leaks or lacks detail: {shown} / {detail}"
                    ))
                } else {
                    None
                }
            }
            (Expect::Rsa15, Err(DecryptError::Rsa15Refused)) => None,
            (Expect::Unsupported(name), Err(e @ DecryptError::Unsupported { .. })) => {
                (!e.to_string().contains(name)).then(|| format!("does not name {name}: {e}"))
            }
            (want, got) => Some(format!(
                "wanted {want:?}, got {:?}",
                got.as_ref().map(|(_, id)| id).map_err(|e| e.log_detail())
            )),
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", c.name));
        }
    }
    assert!(seen_ok > 100, "only {seen_ok} successful cases");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
