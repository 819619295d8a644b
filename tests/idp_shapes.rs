//! Responses shaped like the IdPs people run, signed by independent signers, black-box against
//! the binary: each logs in, each tampered variant is refused.
//!
//! - Salesforce (what G-MIS may run on; research/anchors-2026-12.md §1.2): only the Response
//!   signed, by the xmlsec1 CLI, exclusive C14N with `<ec:InclusiveNamespaces PrefixList="ds
//!   saml samlp xs xsi"/>` on the Reference transform, xs/xsi declared on the Response, NameID
//!   format unspecified, AttributeValue xsi:type xs:anyType, NotBefore 30 s back and 5 min
//!   validity, an absolute RelayState; RSA-SHA1 refused unless `[idp] allow_sha1 = true`.
//! - ADFS: only the Assertion signed (python signxml), the Assertion in the default namespace
//!   (`<Assertion xmlns="...">`), transient NameID, claim URIs as attribute names with the
//!   `uri` NameFormat and no xsi:type, the category sent as a code and mapped by
//!   `[attributes.transform.category]`.
//! - Shibboleth IdP: the Assertion signed (signxml) and then encrypted with AES-128-GCM and
//!   RSA-OAEP (python `cryptography`, tests/support/saml_encrypt.py), urn:oid attribute names.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const ATTR_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
const ATTR_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified";
const DEFAULT_ATTRS: [&str; 6] = [
    "gmisAccountId",
    "accountCategory",
    "facilityCode",
    "facilityName",
    "displayName",
    "mail",
];

/// Replaces the `[attributes]` section (and adds `idp_extra` under `[idp]`), then restarts.
fn reconfigure(gw: &mut Gateway, attributes: &str, idp_extra: &str) {
    let cfg = std::fs::read_to_string(&gw.config).unwrap();
    let a = cfg.find("[attributes]").unwrap();
    let c = cfg.find("[consent]").unwrap();
    let mut out = format!("{}{attributes}\n{}", &cfg[..a], &cfg[c..]);
    out = out.replacen("[idp]\n", &format!("[idp]\n{idp_extra}\n"), 1);
    std::fs::write(&gw.config, out).unwrap();
    gw.restart();
}

/// Logs in with `b64` (and RelayState); returns (problems, Location, cookie).
fn login(
    gw: &Gateway,
    case: &str,
    b64: &str,
    relay: Option<&str>,
    f: &mut Failures,
) -> Option<(String, String)> {
    let r = gw.post_acs(b64, relay);
    let cookie = accepted(gw, case, &r, f)?;
    Some((r.location().unwrap_or_default().to_string(), cookie))
}

/// The signed XML with `from` replaced by `to` (once): a tampered copy.
fn tampered_xml(xml: &[u8], from: &str, to: &str) -> String {
    let s = String::from_utf8(xml.to_vec()).unwrap();
    assert!(s.contains(from), "tamper: {from:?} not in the document");
    s.replacen(from, to, 1)
}

/// Like `tampered_xml`, as base64.
fn tampered(xml: &[u8], from: &str, to: &str) -> String {
    base64_encode(tampered_xml(xml, from, to).as_bytes())
}

fn salesforce_args(sig: &'static str) -> Vec<&'static str> {
    vec![
        "--sign",
        "response",
        "--signer",
        "xmlsec1",
        "--sig-alg",
        sig,
        "--inclusive-ns",
        "ds saml samlp xs xsi",
        "--nameid-format",
        UNSPECIFIED,
        "--nameid",
        "GM0200001",
        "--attr-name-format",
        ATTR_UNSPECIFIED,
        "--attr-xsi-type",
        "xs:anyType",
        "--not-before-offset",
        "-30",
        "--validity",
        "300",
        // Salesforce's four default attributes, beside the custom ones G-MIS would add.
        "--attr",
        "userId=0056A000000Q6Rl",
        "--attr",
        "username=gm0200001@gmis.example",
        "--attr",
        "email=gm0200001@example.jp",
        "--attr",
        "is_portal_user=false",
    ]
}

#[test]
fn salesforce_shaped() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let xml = gw.make_response_xml(&salesforce_args("rsa-sha256"));
    let text = String::from_utf8_lossy(&xml).to_string();
    for needle in [
        "PrefixList=\"ds saml samlp xs xsi\"",
        UNSPECIFIED,
        "xsi:type=\"xs:anyType\"",
    ] {
        f.check(
            &format!("Salesforce shape: {needle}"),
            text.contains(needle),
            || text.clone(),
        );
    }
    f.check(
        "Salesforce shape: one signature, on the Response",
        text.matches("<ds:Signature ").count() + text.matches("<ds:Signature>").count() == 1,
        || text.clone(),
    );
    // Absolute RelayState on our origin -> its path; on another origin -> "/".
    let relay = gw.url("/staff/menu?tab=1");
    if let Some((loc, cookie)) = login(
        &gw,
        "salesforce sha256",
        &base64_encode(&xml),
        Some(&relay),
        &mut f,
    ) {
        f.check(
            "absolute RelayState kept as a path",
            loc == "/staff/menu?tab=1",
            || loc.clone(),
        );
        let u = userinfo_json(&gw, &cookie);
        f.check(
            "unspecified NameID account",
            u.as_ref().ok().and_then(|j| j.str("user")) == Some("GM0200001"),
            || format!("{u:?}"),
        );
    }
    let xml2 = gw.make_response_xml(&salesforce_args("rsa-sha256"));
    if let Some((loc, _)) = login(
        &gw,
        "salesforce foreign RelayState",
        &base64_encode(&xml2),
        Some("https://evil.example/x"),
        &mut f,
    ) {
        f.check("foreign RelayState -> /", loc == "/", || loc.clone());
    }
    let xml3 = gw.make_response_xml(&salesforce_args("rsa-sha256"));
    let bad = tampered(&xml3, ">GM0200001<", ">GM0200002<");
    expect_refusals(
        &gw,
        &[("salesforce tampered NameID", bad, &["signature_invalid"])],
        &mut f,
    );

    // RSA-SHA1: refused by default, accepted with [idp] allow_sha1 = true.
    let sha1 = gw.make_response_xml(&salesforce_args("rsa-sha1"));
    expect_refusals(
        &gw,
        &[(
            "salesforce sha1 without allow_sha1",
            base64_encode(&sha1),
            &["signature_algorithm_refused"],
        )],
        &mut f,
    );
    let attrs = "[attributes]\naccount_id = \"gmisAccountId\"\ncategory = \"accountCategory\"\n\
                 facility_code = \"facilityCode\"\nrequired = [\"account_id\", \"category\"]\n";
    reconfigure(&mut gw, attrs, "allow_sha1 = true");
    login(
        &gw,
        "salesforce sha1 with allow_sha1",
        &base64_encode(&sha1),
        None,
        &mut f,
    );
    let sha1b = gw.make_response_xml(&salesforce_args("rsa-sha1"));
    let bad = tampered(&sha1b, "テスト病院", "別の病院");
    expect_refusals(
        &gw,
        &[(
            "salesforce sha1 tampered attribute",
            bad,
            &["signature_invalid"],
        )],
        &mut f,
    );
    f.finish(&gw);
}

const CLAIM_NAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";
const CLAIM_ROLE: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
const CLAIM_EMAIL: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
const CLAIM_ORG: &str = "http://schemas.xmlsoap.org/claims/Group";

fn drop_defaults(args: &mut Vec<String>) {
    for a in DEFAULT_ATTRS {
        args.push("--drop-attr".into());
        args.push(a.into());
    }
}

#[test]
fn adfs_shaped() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let attrs = format!(
        "[attributes]\naccount_id = \"{CLAIM_NAME}\"\ncategory = \"{CLAIM_ROLE}\"\n\
         facility_code = \"{CLAIM_ORG}\"\nemail = \"{CLAIM_EMAIL}\"\n\
         required = [\"account_id\", \"category\"]\n\
         [attributes.transform.category]\n\"01\" = \"病院\"\n\"02\" = \"診療所\"\n"
    );
    reconfigure(&mut gw, &attrs, "");
    let mut args: Vec<String> = [
        "--sign",
        "assertion",
        "--default-ns-assertion",
        "--nameid-format",
        TRANSIENT,
        "--nameid",
        "_b2c1f0e4a7",
        "--attr-name-format",
        ATTR_URI,
        "--attr-xsi-type",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    drop_defaults(&mut args);
    for (n, v) in [
        (CLAIM_NAME, "GM0300001"),
        (CLAIM_ROLE, "01"),
        (CLAIM_ORG, "1310000001"),
        (CLAIM_EMAIL, "a@example.jp"),
    ] {
        args.push("--attr".into());
        args.push(format!("{n}={v}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let xml = gw.make_response_xml(&argv);
    let text = String::from_utf8_lossy(&xml).to_string();
    f.check(
        "fixture has the ADFS shape",
        text.contains("<Assertion xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\"")
            && text.contains(TRANSIENT)
            && text.contains(CLAIM_ROLE),
        || text.clone(),
    );
    if let Some((_, cookie)) = login(&gw, "adfs", &base64_encode(&xml), None, &mut f) {
        let u = userinfo_json(&gw, &cookie);
        f.check(
            "claim URIs mapped, category 01 -> 病院",
            u.as_ref().ok().and_then(|j| j.str("user")) == Some("GM0300001")
                && u.as_ref().ok().and_then(|j| j.str("category")) == Some("病院"),
            || format!("{u:?}"),
        );
    }
    let xml2 = gw.make_response_xml(&argv);
    let bad = tampered(&xml2, ">GM0300001<", ">GM0300002<");
    let xml3 = gw.make_response_xml(&argv);
    let bad_role = tampered(&xml3, ">01<", ">02<");
    expect_refusals(
        &gw,
        &[
            ("adfs tampered account claim", bad, &["signature_invalid"]),
            ("adfs tampered role claim", bad_role, &["signature_invalid"]),
        ],
        &mut f,
    );
    f.finish(&gw);
}

const OID_UID: &str = "urn:oid:0.9.2342.19200300.100.1.1";
const OID_MAIL: &str = "urn:oid:0.9.2342.19200300.100.1.3";
const OID_BUSINESS_CATEGORY: &str = "urn:oid:2.5.4.15";
const OID_DISPLAY_NAME: &str = "urn:oid:2.16.840.1.113730.3.1.241";

fn sp_cert(gw: &Gateway) -> PathBuf {
    std::fs::read_dir(gw.dir.path().join("sp-keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "crt"))
        .expect("an SP certificate")
}

/// Encrypts the Assertion of `xml` for the SP (AES-128-GCM, RSA-OAEP); base64.
fn encrypt(gw: &Gateway, xml: &[u8], name: &str, tamper: Option<&str>) -> String {
    let dir = gw.dir.path();
    let inp = dir.join(format!("{name}.xml"));
    let out = dir.join(format!("{name}.enc.xml"));
    std::fs::write(&inp, xml).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "encrypt".into(),
        "--in".into(),
        inp.into(),
        "--cert".into(),
        sp_cert(gw).into(),
        "--out".into(),
        out.clone().into(),
        "--data".into(),
        "aes128-gcm".into(),
        "--key-transport".into(),
        "rsa-oaep-mgf1p".into(),
    ];
    if let Some(t) = tamper {
        args.push("--tamper".into());
        args.push(t.into());
    }
    run_support("saml_encrypt.py", &args);
    base64_encode(&std::fs::read(Path::new(&out)).unwrap())
}

#[test]
fn shibboleth_shaped() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let attrs = format!(
        "[attributes]\naccount_id = \"{OID_UID}\"\ncategory = \"{OID_BUSINESS_CATEGORY}\"\n\
         email = \"{OID_MAIL}\"\ndisplay_name = \"{OID_DISPLAY_NAME}\"\n\
         required = [\"account_id\", \"category\"]\n"
    );
    reconfigure(&mut gw, &attrs, "");
    let mut args: Vec<String> = [
        "--sign",
        "assertion",
        "--nameid",
        "AAdzZWNyZXQx",
        "--attr-name-format",
        ATTR_URI,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    drop_defaults(&mut args);
    for (n, v) in [
        (OID_UID, "GM0400001"),
        (OID_BUSINESS_CATEGORY, "診療所"),
        (OID_MAIL, "s@example.jp"),
        (OID_DISPLAY_NAME, "佐藤 花子"),
    ] {
        args.push("--attr".into());
        args.push(format!("{n}={v}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let xml = gw.make_response_xml(&argv);
    let b64 = encrypt(&gw, &xml, "shib", None);
    let enc = String::from_utf8(base64_decode(&b64).unwrap()).unwrap();
    f.check(
        "fixture is encrypted with AES-GCM",
        enc.contains("EncryptedAssertion")
            && enc.contains("aes128-gcm")
            && !enc.contains("GM0400001"),
        || enc.clone(),
    );
    if let Some((_, cookie)) = login(&gw, "shibboleth", &b64, None, &mut f) {
        let u = userinfo_json(&gw, &cookie);
        f.check(
            "urn:oid names mapped",
            u.as_ref().ok().and_then(|j| j.str("user")) == Some("GM0400001")
                && u.as_ref().ok().and_then(|j| j.str("category")) == Some("診療所"),
            || format!("{u:?}"),
        );
    }
    let xml2 = gw.make_response_xml(&argv);
    let bad_tag = encrypt(&gw, &xml2, "shib-tag", Some("tag"));
    let xml3 = gw.make_response_xml(&argv);
    let bad_signed = encrypt(
        &gw,
        tampered_xml(&xml3, ">GM0400001<", ">GM0400002<").as_bytes(),
        "shib-sig",
        None,
    );
    expect_refusals(
        &gw,
        &[
            ("shibboleth GCM tag flipped", bad_tag, &["decrypt_failed"]),
            (
                "shibboleth tampered then encrypted",
                bad_signed,
                &["signature_invalid"],
            ),
        ],
        &mut f,
    );
    f.finish(&gw);
}

/// pysaml2's IdP (`saml2.server.Server`, signing through the xmlsec1 CLI): a second IdP
/// implementation no one here wrote, given the gateway's own SP metadata.
fn pysaml2_response(gw: &Gateway, extra: &[&str]) -> Vec<u8> {
    let md = gw.dir.path().join("sp-metadata.xml");
    if !md.exists() {
        let r = gw.get("/saml/metadata", None);
        assert_eq!(r.status, 200, "GET /saml/metadata");
        std::fs::write(&md, r.text()).unwrap();
    }
    let mut args: Vec<std::ffi::OsString> = vec![
        "response".into(),
        "--sp-metadata".into(),
        md.into(),
        "--key".into(),
        gw.idp[0].key.clone().into(),
        "--cert".into(),
        gw.idp[0].cert.clone().into(),
        "--entity-id".into(),
        IDP_ENTITY.into(),
        "--acs".into(),
        gw.acs_url().into(),
        "--sp-entity".into(),
        gw.sp_entity().into(),
        "--xml".into(),
    ];
    args.extend(extra.iter().map(|s| std::ffi::OsString::from(*s)));
    run_support("pysaml2_idp.py", &args)
}

#[test]
fn pysaml2_idp() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    for (case, sign, nameid) in [
        ("pysaml2 response-signed", "response", "GM0500001"),
        ("pysaml2 assertion-signed", "assertion", "GM0500002"),
        ("pysaml2 both signed", "both", "GM0500003"),
    ] {
        let xml = pysaml2_response(&gw, &["--sign", sign, "--nameid", nameid]);
        if let Some((_, cookie)) = login(&gw, case, &base64_encode(&xml), None, &mut f) {
            let u = userinfo_json(&gw, &cookie);
            f.check(
                &format!("{case}: user"),
                u.as_ref().ok().and_then(|j| j.str("user")) == Some(nameid),
                || format!("{u:?}"),
            );
        }
    }
    let xml = pysaml2_response(&gw, &["--sign", "response", "--nameid", "GM0500004"]);
    let bad = tampered(&xml, ">GM0500004<", ">GM0500005<");
    let xml2 = pysaml2_response(&gw, &["--sign", "assertion", "--nameid", "GM0500006"]);
    let bad2 = tampered(&xml2, ">1310000001<", ">1310000002<");
    // pysaml2's default algorithm is RSA-SHA1: refused without [idp] allow_sha1.
    let sha1 = pysaml2_response(&gw, &["--sign", "response", "--sha1"]);
    expect_refusals(
        &gw,
        &[
            ("pysaml2 tampered NameID", bad, &["signature_invalid"]),
            ("pysaml2 tampered attribute", bad2, &["signature_invalid"]),
            (
                "pysaml2 default SHA-1",
                base64_encode(&sha1),
                &["signature_algorithm_refused"],
            ),
        ],
        &mut f,
    );
    f.finish(&gw);
}
