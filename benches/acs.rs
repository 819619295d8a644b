//! ACS verification micro-benchmarks (criterion).
//!
//! Inputs: signed Responses made by an independent signer (the peers' `gen_responses.py`,
//! signxml) and stored by `bench/setup.sh` in `bench/fixtures/`:
//!   response.xml   only the Response signed      (~5.6 KB)
//!   assertion.xml  only the Assertion signed     (~5.6 KB)
//!   both.xml       Response and Assertion signed (~7.9 KB)
//!   idp-metadata.xml, params   (IdP metadata; SP entityID and ACS the fixtures were made for)
//! `SAMLGATE_BENCH_FIXTURES=DIR` points elsewhere. No network is used at bench time.
//!
//! If the fixtures are missing, the bench falls back to a Response-signed document made by
//! `samlgate::demo::DemoIdp` (signed by samael/xmlsec itself, RSA-2048 key made here) and says
//! so on stderr; the Assertion-signed and both-signed cases are then skipped.
//!
//! `now` is fixed (the fixture's IssueInstant + 5 s), so the fixtures never expire.
//!
//! Groups (medians: `python3 bench/criterion_medians.py` after `cargo bench --bench acs`):
//!   verify/<layout>         samlgate::saml::acs::verify_response (prescan + xmlsec + checks)
//!   decode_verify/<layout>  decode_saml_response(base64) + verify_response
//!   prescan/<layout>        samlgate::saml::prescan::prescan alone
//!   parts/*                 where verify's time goes: samael's xmlsec reduce alone (PreDigest),
//!                           xmlsec signature check alone (no reduce), samael schema parse of the
//!                           verified bytes, base64 decode alone
//!
//! Quick run: `cargo bench --bench acs -- --quick` (or a filter, e.g. `-- verify/`).
//!
//! Memory mode: `SAMLGATE_BENCH_RSS=100000 cargo bench --bench acs` runs no criterion; it
//! verifies each layout N times in-process and prints VmRSS (see `rss_loop`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use criterion::{black_box, criterion_group, Criterion};
use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
use samlgate::saml::acs::{
    decode_saml_response, verify_response, Expectations, SignedPart, ALLOWED_ALGORITHMS,
};
use samlgate::saml::idp::IdpMetadata;
use samlgate::saml::prescan::prescan;

struct Case {
    name: &'static str,
    xml: String,
    expect_signed: SignedPart,
}

struct Fixtures {
    source: String,
    idp: IdpMetadata,
    sp_entity_id: String,
    acs_url: String,
    now: DateTime<Utc>,
    cases: Vec<Case>,
}

fn fixture_dir() -> PathBuf {
    std::env::var_os("SAMLGATE_BENCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/fixtures"))
}

/// `IssueInstant="..."` of the root element.
fn issue_instant(xml: &str) -> Option<DateTime<Utc>> {
    let i = xml.find("IssueInstant=\"")? + "IssueInstant=\"".len();
    let end = xml[i..].find('"')? + i;
    DateTime::parse_from_rfc3339(&xml[i..end])
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn load_fixtures(dir: &Path) -> Result<Fixtures, String> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))
    };
    let params = read("params")?;
    let param = |k: &str| {
        params
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::trim)
            .map(str::to_string)
            .ok_or(format!("params: no {k}="))
    };
    let idp = IdpMetadata::parse(&read("idp-metadata.xml")?)?;
    let mut cases = Vec::new();
    for (name, file, signed) in [
        ("response-signed", "response.xml", SignedPart::Response),
        ("assertion-signed", "assertion.xml", SignedPart::Assertion),
        ("both-signed", "both.xml", SignedPart::Response),
    ] {
        cases.push(Case {
            name,
            xml: read(file)?,
            expect_signed: signed,
        });
    }
    let t = issue_instant(&cases[0].xml).ok_or("response.xml: no IssueInstant")?;
    Ok(Fixtures {
        source: format!(
            "gen_responses.py fixtures in {} ({})",
            dir.display(),
            param("generated").unwrap_or_default()
        ),
        idp,
        sp_entity_id: param("sp_entity")?,
        acs_url: param("acs")?,
        now: t + chrono::Duration::seconds(5),
        cases,
    })
}

/// No fixtures: one Response-signed document from the demo IdP (samael's own signer).
fn demo_fixtures() -> Fixtures {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509NameBuilder, X509};
    use samlgate::demo::{DemoIdp, DEMO_IDP_ENTITY, USERS};

    let rsa = Rsa::generate(2048).unwrap();
    let key_der = rsa.private_key_to_der().unwrap();
    let pkey = PKey::from_rsa(rsa).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "bench-idp").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&pkey).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    b.sign(&pkey, MessageDigest::sha256()).unwrap();
    let cert_b64 = base64::engine::general_purpose::STANDARD.encode(b.build().to_der().unwrap());
    let acs = "http://127.0.0.1:18090/saml/acs".to_string();
    let audience = "http://127.0.0.1:18090/saml/metadata".to_string();
    let md = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{DEMO_IDP_ENTITY}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:1/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    );
    let idp = IdpMetadata::parse(&md).expect("demo IdP metadata");
    let demo = DemoIdp {
        key_der,
        cert_b64,
        acs: acs.clone(),
        audience: audience.clone(),
    };
    let xml = demo.signed_response(&USERS[0], None).expect("demo signing");
    Fixtures {
        source: "FALLBACK: DemoIdp-signed Response (samael/xmlsec signer, RSA-2048); run \
                 bench/setup.sh for the gen_responses.py fixtures and the assertion/both layouts"
            .into(),
        idp,
        sp_entity_id: audience,
        acs_url: acs,
        now: Utc::now(),
        cases: vec![Case {
            name: "response-signed",
            xml,
            expect_signed: SignedPart::Response,
        }],
    }
}

/// What the gateway expects, as `web::acs` builds it, with `now` fixed by the fixtures.
/// (The one place to follow changes of `Expectations`.)
fn expectations(fx: &Fixtures) -> Expectations<'_> {
    Expectations {
        idp: &fx.idp,
        sp_entity_id: &fx.sp_entity_id,
        acs_url: &fx.acs_url,
        skew: chrono::Duration::seconds(60),
        max_issue_delay: chrono::Duration::seconds(300),
        allow_unsolicited: true,
        allow_sha1: false,
        expected_request_ids: &[],
        decrypt_keys: &[],
        require_encryption: false,
        now: fx.now,
    }
}

fn benches(c: &mut Criterion) {
    let dir = fixture_dir();
    let fx = match load_fixtures(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("acs bench: fixtures not usable ({e}); falling back to DemoIdp");
            demo_fixtures()
        }
    };
    eprintln!("acs bench inputs: {}", fx.source);
    let exp = expectations(&fx);

    // Every input must verify before it is timed: a bench of a refusal path would lie.
    for case in &fx.cases {
        let v = verify_response(&case.xml, &exp)
            .unwrap_or_else(|r| panic!("{}: refused: {:?} {}", case.name, r.reason, r.detail));
        assert_eq!(v.signed, case.expect_signed, "{}", case.name);
        eprintln!(
            "  {:<17} {:>5} bytes, NameID {}, {} attributes, signed part {}",
            case.name,
            case.xml.len(),
            v.name_id,
            v.attributes.len(),
            v.signed.as_str()
        );
    }

    let mut g = c.benchmark_group("verify");
    for case in &fx.cases {
        g.bench_function(case.name, |b| {
            b.iter(|| verify_response(black_box(&case.xml), &exp).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode_verify");
    for case in &fx.cases {
        let b64 = base64::engine::general_purpose::STANDARD.encode(case.xml.as_bytes());
        g.bench_function(case.name, |b| {
            b.iter(|| {
                let xml = decode_saml_response(black_box(&b64)).unwrap();
                verify_response(&xml, &exp).unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("prescan");
    for case in &fx.cases {
        g.bench_function(case.name, |b| {
            b.iter(|| prescan(black_box(&case.xml)).unwrap())
        });
    }
    g.finish();

    // Where verify's time goes, on the Response-signed input.
    let case = &fx.cases[0];
    let mut g = c.benchmark_group("parts");
    g.bench_function("xmlsec_reduce_predigest", |b| {
        b.iter(|| {
            Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                black_box(&case.xml),
                &fx.idp.certs_der,
                ReduceMode::PreDigest,
                Some(&ALLOWED_ALGORITHMS),
            )
            .unwrap()
        })
    });
    g.bench_function("xmlsec_verify_only", |b| {
        b.iter(|| {
            Crypto::verify_signed_xml(black_box(&case.xml), &fx.idp.certs_der[0], Some("ID"))
                .unwrap()
        })
    });
    let verified = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        &case.xml,
        &fx.idp.certs_der,
        ReduceMode::PreDigest,
        Some(&ALLOWED_ALGORITHMS),
    )
    .unwrap();
    g.bench_function("samael_parse_verified_response", |b| {
        b.iter(|| {
            black_box(&verified)
                .parse::<samael::schema::Response>()
                .unwrap()
        })
    });
    let b64 = base64::engine::general_purpose::STANDARD.encode(case.xml.as_bytes());
    g.bench_function("decode_base64_only", |b| {
        b.iter(|| decode_saml_response(black_box(&b64)).unwrap())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args()
}

/// `/proc/self/status` VmRSS in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `SAMLGATE_BENCH_RSS=N cargo bench --bench acs`: instead of criterion, N verifies per layout
/// in this process (no HTTP, no store), VmRSS every N/10. Control rows run samael's default
/// reduce mode (ValidateAndMarkNoAncestors) directly, the mode research/samael.md §5 found
/// leaking ~2.4 KB per Assertion-only-signed verify. Output: markdown on stdout.
/// Also: `SAMLGATE_BENCH_RSS_PATHS` (verify_response,samael_default), `SAMLGATE_BENCH_RSS_LAYOUTS`
/// (e.g. `response,assertion`), `SAMLGATE_BENCH_RSS_WARMUP` (1000). With a small N this is also
/// the loop to run under callgrind or perf (see bench/RESULTS.md).
fn rss_loop(n: usize) {
    let fx = load_fixtures(&fixture_dir()).unwrap_or_else(|e| {
        eprintln!("acs bench: fixtures not usable ({e}); falling back to DemoIdp");
        demo_fixtures()
    });
    let exp = expectations(&fx);
    println!("inputs: {}\n", fx.source);
    println!("| path | layout | verifies | RSS after warm-up KiB | RSS at 10 % steps KiB | end - start | per verify |");
    println!("|---|---|---|---|---|---|---|");
    let step = (n / 10).max(1);
    let env = |k: &str| std::env::var(k).ok();
    let warmup: usize = env("SAMLGATE_BENCH_RSS_WARMUP")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let layouts = env("SAMLGATE_BENCH_RSS_LAYOUTS").unwrap_or_default();
    let run = |path: &str, case: &Case, f: &dyn Fn(&str)| {
        for _ in 0..warmup {
            f(&case.xml);
        }
        let start = rss_kib();
        let mut steps = Vec::new();
        let t = std::time::Instant::now();
        for i in 1..=n {
            f(&case.xml);
            if i % step == 0 {
                steps.push(rss_kib());
            }
        }
        let end = rss_kib();
        println!(
            "| {path} | {} | {n} | {start} | {} | {:+} KiB | {:.0} B ({:.0} µs/verify) |",
            case.name,
            steps
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            end as i64 - start as i64,
            (end as f64 - start as f64) * 1024.0 / n as f64,
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    let modes = std::env::var("SAMLGATE_BENCH_RSS_PATHS")
        .unwrap_or_else(|_| "verify_response,samael_default".into());
    for case in &fx.cases {
        if !layouts.is_empty() && !layouts.split(',').any(|l| case.name.starts_with(l)) {
            continue;
        }
        if modes.contains("verify_response") {
            run("samlgate verify_response (PreDigest)", case, &|x| {
                verify_response(x, &exp).unwrap();
            });
        }
        if modes.contains("samael_default") {
            run("samael reduce, default mode (control)", case, &|x| {
                Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                    x,
                    &fx.idp.certs_der,
                    ReduceMode::default(),
                    Some(&ALLOWED_ALGORITHMS),
                )
                .unwrap();
            });
        }
    }
}

criterion_group! {
    name = acs;
    config = config();
    targets = benches
}

fn main() {
    if let Some(n) = std::env::var("SAMLGATE_BENCH_RSS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        rss_loop(n);
        return;
    }
    acs();
    Criterion::default().configure_from_args().final_summary();
}
