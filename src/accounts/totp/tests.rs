use std::path::PathBuf;
use std::process::Command;

use super::*;

fn rfc_key() -> TotpSecret {
    TotpSecret(Zeroizing::new(b"12345678901234567890".to_vec()))
}

/// RFC 6238 Appendix B, the SHA-1 rows (8-digit codes).
#[test]
fn rfc6238_appendix_b_sha1_vectors() {
    let rows: [(i64, u32); 6] = [
        (59, 94287082),
        (1111111109, 7081804),
        (1111111111, 14050471),
        (1234567890, 89005924),
        (2000000000, 69279037),
        (20000000000, 65353130),
    ];
    for (t, want) in rows {
        assert_eq!(hotp(&rfc_key().0, step_at(t), 8), want, "T={t}");
        // Our 6-digit code is the same truncation mod 10^6.
        assert_eq!(
            code_at(&rfc_key(), step_at(t)),
            format!("{:06}", want % 1_000_000)
        );
    }
}

/// RFC 4226 Appendix D: HOTP counters 0..9.
#[test]
fn rfc4226_appendix_d_hotp_vectors() {
    let want = [
        755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
    ];
    for (c, w) in want.iter().enumerate() {
        assert_eq!(hotp(&rfc_key().0, c as u64, 6), *w, "counter {c}");
    }
}

/// The venv python (SAMLGATE_TEST_PYTHON, else `.venv/bin/python`), with pyotp. Missing is a
/// failure with a hint, never a skip.
fn python() -> PathBuf {
    let p = std::env::var_os("SAMLGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import pyotp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python with pyotp not found at {}: run scripts/install-deps.sh, or \
         `.venv/bin/pip install -r tests/support/requirements.txt`, or set SAMLGATE_TEST_PYTHON",
        p.display()
    );
    p
}

fn pyotp(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Codes computed by pyotp (an independent implementation) for fresh secrets and a spread of
/// times, including step boundaries, equal ours.
#[test]
fn codes_match_pyotp() {
    let times: Vec<i64> = vec![0, 29, 30, 59, 1_700_000_000, 1_796_000_009, 2_000_000_000];
    for _ in 0..3 {
        let s = TotpSecret::generate();
        let b32 = s.to_base32();
        let ts: Vec<String> = times.iter().map(|t| t.to_string()).collect();
        let mut args = vec![b32.as_str()];
        args.extend(ts.iter().map(String::as_str));
        let got = pyotp(
            "import sys, pyotp\nt = pyotp.TOTP(sys.argv[1])\nprint(' '.join(t.at(int(x)) for x in sys.argv[2:]))",
            &args,
        );
        let ours: Vec<String> = times.iter().map(|t| code_at(&s, step_at(*t))).collect();
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            ours,
            "secret {b32}"
        );
    }
}

/// pyotp parses our otpauth:// URI (Japanese issuer included) back to the same secret,
/// issuer, account and parameters, and its code for that URI verifies here.
#[test]
fn otpauth_uri_is_understood_by_pyotp() {
    let e = Enrolment::new("医療情報ネット", "tanaka.hanako@example.jp");
    let now = 1_800_000_000;
    let got = pyotp(
        "import sys, pyotp\nt = pyotp.parse_uri(sys.argv[1])\n\
         print(t.secret); print(t.issuer); print(t.name); print(t.digits, t.interval, t.digest().name)\n\
         print(t.at(int(sys.argv[2])))",
        &[&e.uri, &now.to_string()],
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], e.secret.to_base32());
    assert_eq!(lines[1], "医療情報ネット");
    assert_eq!(lines[2], "tanaka.hanako@example.jp");
    assert_eq!(lines[3], "6 30 sha1");
    assert_eq!(verify(&e.secret, lines[4], now, None), Ok(step_at(now)));
}

#[test]
fn window_is_one_step_either_side() {
    let s = TotpSecret::generate();
    let now = 1_800_000_015;
    let c = step_at(now);
    for step in [c - 1, c, c + 1] {
        assert_eq!(verify(&s, &code_at(&s, step), now, None), Ok(step));
    }
    for step in [c - 2, c + 2] {
        let code = code_at(&s, step);
        // (Skip the 1-in-10^6 chance that the far code equals an in-window one.)
        if (c - 1..=c + 1).all(|w| code_at(&s, w) != code) {
            assert_eq!(verify(&s, &code, now, None), Err(TotpError::Wrong));
        }
    }
}

#[test]
fn a_used_step_and_earlier_ones_are_replays() {
    let s = TotpSecret::generate();
    let now = 1_800_000_015;
    let c = step_at(now);
    let used = verify(&s, &code_at(&s, c), now, None).unwrap();
    assert_eq!(
        verify(&s, &code_at(&s, c), now, Some(used)),
        Err(TotpError::Replayed)
    );
    assert_eq!(
        verify(&s, &code_at(&s, c - 1), now, Some(used)),
        Err(TotpError::Replayed)
    );
    // The next step's code is still good.
    assert_eq!(
        verify(&s, &code_at(&s, c + 1), now + 30, Some(used)),
        Ok(c + 1)
    );
}

#[test]
fn input_forms() {
    let s = TotpSecret::generate();
    let now = 1_800_000_015;
    let code = code_at(&s, step_at(now));
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let wide: String = code
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    assert!(verify(&s, &spaced, now, None).is_ok());
    assert!(verify(&s, &wide, now, None).is_ok(), "full-width {wide}");
    for bad in ["", "12345", "1234567", "12a456", "-12345"] {
        assert_eq!(
            verify(&s, bad, now, None),
            Err(TotpError::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn secret_is_160_bits_round_trips_and_is_never_formatted() {
    let s = TotpSecret::generate();
    assert_eq!(s.0.len(), 20);
    let b32 = s.to_base32();
    assert_eq!(b32.len(), 32);
    assert_eq!(TotpSecret::from_base32(&b32), Some(s.clone()));
    assert_ne!(TotpSecret::generate(), s);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, format!("\"{b32}\""));
    assert_eq!(serde_json::from_str::<TotpSecret>(&json).unwrap(), s);
    assert!(!format!("{s:?}").contains(&b32));
    assert!(TotpSecret::from_base32("AAAA").is_none());
    assert!(TotpSecret::from_base32("not base32!").is_none());
}

/// Reads the module grid back out of the SVG path (`M x y h w v h H x V y` rectangles).
fn svg_bitmap(svg: &str) -> (usize, Vec<bool>) {
    let w: usize = svg
        .split("width=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut px = vec![false; w * w];
    for rect in d.split('M').filter(|r| !r.is_empty()) {
        let n: Vec<usize> = rect
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let (x, y, rw, rh) = (n[0], n[1], n[2], n[3]);
        for yy in y..y + rh {
            for xx in x..x + rw {
                px[yy * w + xx] = true;
            }
        }
    }
    (w, px)
}

/// The SVG is a real QR code of the URI: an independent decoder (rqrr) reads it back.
#[test]
fn qr_svg_scans_back_to_the_uri() {
    let e = Enrolment::new("医療情報ネット", "u-0001");
    assert!(e.qr_svg.starts_with("<svg") && e.qr_svg.ends_with("</svg>"));
    assert!(!e.qr_svg.contains("<?xml"));
    let (w, px) = svg_bitmap(&e.qr_svg);
    assert!(w >= 240);
    let mut img = rqrr::PreparedImage::prepare_from_bitmap(w, w, |x, y| px[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, e.uri);
}

#[test]
fn recovery_codes_are_single_use_and_stored_only_as_hashes() {
    let (plain, mut stored) = RecoveryCodes::generate();
    assert_eq!(plain.len(), 10);
    assert_eq!(stored.remaining(), 10);
    let mut uniq = plain.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 10);
    let json = serde_json::to_string(&stored).unwrap();
    for p in &plain {
        assert_eq!(p.len(), 19);
        assert!(!json.contains(p.as_str()) && !json.contains(&normalise_code(p)));
    }
    // Typed in upper case without hyphens: still the code.
    let typed = plain[3].replace('-', "").to_uppercase();
    assert!(stored.redeem(&typed));
    assert_eq!(stored.remaining(), 9);
    assert!(!stored.redeem(&plain[3]), "second use");
    assert!(!stored.redeem("aaaa-bbbb-cccc-dddd"));
    assert!(stored.redeem(&plain[9]));
    assert_eq!(stored.remaining(), 8);
}

#[test]
fn every_totp_error_has_japanese_then_english() {
    for e in [TotpError::Malformed, TotpError::Wrong, TotpError::Replayed] {
        let m = e.message();
        assert!(m.ja.chars().any(|c| c as u32 > 0x3000) && m.en.is_ascii());
    }
}
