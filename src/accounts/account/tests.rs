use super::*;
use crate::accounts::password::HashParams;
use crate::accounts::reset::ResetTicket;
use crate::accounts::throttle::Blocked;
use crate::accounts::totp::{code_at, step_at};

const T0: i64 = 1_800_000_000;

fn cheap() -> HashParams {
    HashParams {
        m_kib: 256,
        t: 1,
        p: 1,
    }
}

/// The config, hasher and blocklist a test runs with.
struct World {
    cfg: LocalConfig,
    hasher: Hasher,
}

impl World {
    fn new(mode: SecondFactor) -> World {
        World {
            cfg: LocalConfig {
                second_factor: mode,
                argon2: cheap(),
                ..LocalConfig::default()
            },
            hasher: Hasher::new(cheap()).unwrap(),
        }
    }

    fn at(&self, now: i64) -> Ctx<'_> {
        Ctx {
            cfg: &self.cfg,
            hasher: &self.hasher,
            blocklist: Blocklist::builtin(),
            now,
        }
    }
}

fn pw(s: &str) -> Password {
    Password::new(s.into())
}

const GOOD: &str = "a long phrase nobody else uses";

fn done(step: LoginStep) -> Done {
    match step {
        LoginStep::Done(d) => d,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn change(step: LoginStep) -> ChangePassword {
    match step {
        LoginStep::ChangePassword(c) => c,
        other => panic!("expected ChangePassword, got {other:?}"),
    }
}

fn totp_needed(step: LoginStep) -> TotpNeeded {
    match step {
        LoginStep::TotpNeeded(t) => t,
        other => panic!("expected TotpNeeded, got {other:?}"),
    }
}

fn enrol(step: LoginStep) -> EnrolTotp {
    match step {
        LoginStep::EnrolTotp(e) => e,
        other => panic!("expected EnrolTotp, got {other:?}"),
    }
}

/// An account that has changed its password to GOOD (no TOTP).
fn settled(w: &World, role: Role) -> Account {
    let (mut a, _) = Account::create("u1", role, &w.at(T0)).unwrap();
    a.set_password(&pw(GOOD), &w.at(T0)).unwrap();
    a
}

/// Enrols TOTP on `a` directly; returns the secret and the recovery codes.
fn with_totp(a: &mut Account, now: i64) -> (TotpSecret, Vec<String>) {
    let s = TotpSecret::generate();
    let codes = a
        .enrol_totp(s.clone(), &code_at(&s, step_at(now)), now)
        .unwrap();
    (s, codes)
}

#[test]
fn first_login_forces_a_change_then_done() {
    let w = World::new(SecondFactor::Optional);
    let (mut a, initial) = Account::create("u1", Role::Staff, &w.at(T0)).unwrap();
    assert!(a.must_change);
    let step = login(Some(&mut a), &initial, &w.at(T0 + 60)).unwrap();
    let c = change(step);
    // Too short (15 without a second factor) and common: refused, step handed back.
    let (c, e) = c
        .submit(&mut a, &pw("password"), &w.at(T0 + 61))
        .unwrap_err();
    let ChangeError::Refused(r) = e else { panic!() };
    assert!(r.contains(&Refusal::TooShort { min: 15 }) && r.contains(&Refusal::Common));
    assert!(a.must_change);
    // The one-time password itself may not be kept.
    let (c, e) = c.submit(&mut a, &initial, &w.at(T0 + 62)).unwrap_err();
    assert_eq!(e, ChangeError::Refused(vec![Refusal::SameAsCurrent]));
    let d = done(c.submit(&mut a, &pw(GOOD), &w.at(T0 + 63)).unwrap());
    assert_eq!(d.user_id, "u1");
    assert_eq!(d.method, AuthMethod::Password);
    assert!(!a.must_change && a.temp_expires_at.is_none());
    // Next login: straight to Done; the old one-time password no longer works.
    done(login(Some(&mut a), &pw(GOOD), &w.at(T0 + 100)).unwrap());
    let r = login(Some(&mut a), &initial, &w.at(T0 + 200)).unwrap_err();
    assert_eq!(r, LoginRefusal::WrongPassword);
}

#[test]
fn unknown_id_and_wrong_password_get_the_same_answer() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let unknown = login(None, &pw(GOOD), &w.at(T0)).unwrap_err();
    let wrong = login(Some(&mut a), &pw("not it at all, sorry"), &w.at(T0)).unwrap_err();
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.message(), wrong.message());
    assert_eq!(a.throttle.failures, 1);
}

#[test]
fn required_mode_enrols_after_the_change_with_the_lower_minimum() {
    let w = World::new(SecondFactor::Required);
    let (mut a, initial) = Account::create("u1", Role::Staff, &w.at(T0)).unwrap();
    let c = change(login(Some(&mut a), &initial, &w.at(T0)).unwrap());
    // 8 characters are enough when the second factor is required.
    let e = enrol(c.submit(&mut a, &pw("kq7v-mz3x"), &w.at(T0)).unwrap());
    let shown = e.start("医療情報ネット");
    assert!(shown.uri.contains("u1") && shown.qr_svg.starts_with("<svg"));
    let now = T0 + 30;
    // A wrong first code keeps the step; the right one enrols and finishes the login.
    let wrong = if code_at(&shown.secret, step_at(now)) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (e, err) = e
        .confirm(&mut a, shown.secret.clone(), wrong, &w.at(now))
        .unwrap_err();
    assert_eq!(err, TotpError::Wrong);
    assert!(a.totp.is_none());
    let code = code_at(&shown.secret, step_at(now));
    let (step, recovery) = e
        .confirm(&mut a, shown.secret.clone(), &code, &w.at(now))
        .unwrap();
    assert_eq!(done(step).method, AuthMethod::PasswordTotp);
    assert_eq!(recovery.len(), 10);
    let en = a.totp.as_ref().unwrap();
    assert_eq!(en.last_step, Some(step_at(now)));
    // The enrolment code cannot be used again for the next login.
    let t = totp_needed(login(Some(&mut a), &pw("kq7v-mz3x"), &w.at(now + 5)).unwrap());
    let (_, r) = t.code(&mut a, &code, &w.at(now + 5)).unwrap_err();
    assert_eq!(r, LoginRefusal::Totp(TotpError::Replayed));
}

#[test]
fn enrolled_totp_is_asked_for_and_failures_count_towards_the_lock() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (s, _) = with_totp(&mut a, T0);
    let now = T0 + 300;
    let mut t = totp_needed(login(Some(&mut a), &pw(GOOD), &w.at(now)).unwrap());
    let good = code_at(&s, step_at(now));
    let bad = if good == "123456" { "654321" } else { "123456" };
    let mut at = now;
    for i in 1..=3 {
        let (back, r) = t.code(&mut a, bad, &w.at(at)).unwrap_err();
        assert_eq!(r, LoginRefusal::Totp(TotpError::Wrong));
        assert_eq!(a.throttle.failures, i);
        t = back;
        at += 10;
    }
    // Still waiting out the delay: refused without checking the code.
    let (t, r) = t.code(&mut a, &good, &w.at(at - 10)).unwrap_err();
    assert!(
        matches!(r, LoginRefusal::Blocked(Blocked::Wait { .. })),
        "{r:?}"
    );
    let code = code_at(&s, step_at(at));
    let d = done(t.code(&mut a, &code, &w.at(at)).unwrap());
    assert_eq!(d.method, AuthMethod::PasswordTotp);
    assert_eq!(d.method.amr(), &["pwd", "otp", "mfa"]);
    assert_eq!(a.throttle.failures, 0, "cleared only when done");
}

#[test]
fn right_password_does_not_clear_failures_before_the_second_factor() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (s, _) = with_totp(&mut a, T0);
    let mut now = T0 + 100;
    let bad = |n: i64| {
        if code_at(&s, step_at(n)) == "999999" {
            "999998"
        } else {
            "999999"
        }
    };
    for i in 1..=9 {
        let t = totp_needed(login(Some(&mut a), &pw(GOOD), &w.at(now)).unwrap());
        let _ = t.code(&mut a, bad(now), &w.at(now)).unwrap_err();
        assert_eq!(a.throttle.failures, i);
        now += 120;
    }
    let t = totp_needed(login(Some(&mut a), &pw(GOOD), &w.at(now)).unwrap());
    let _ = t.code(&mut a, bad(now), &w.at(now)).unwrap_err();
    let r = login(Some(&mut a), &pw(GOOD), &w.at(now + 120)).unwrap_err();
    assert!(
        matches!(r, LoginRefusal::Blocked(Blocked::Locked { .. })),
        "{r:?}"
    );
}

#[test]
fn recovery_code_completes_once() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (_, codes) = with_totp(&mut a, T0);
    let t = totp_needed(login(Some(&mut a), &pw(GOOD), &w.at(T0 + 60)).unwrap());
    let d = done(t.recovery(&mut a, &codes[0], &w.at(T0 + 60)).unwrap());
    assert_eq!(d.method, AuthMethod::PasswordRecovery);
    assert!(d.method.is_multi_factor());
    let t = totp_needed(login(Some(&mut a), &pw(GOOD), &w.at(T0 + 90)).unwrap());
    let (_, r) = t.recovery(&mut a, &codes[0], &w.at(T0 + 90)).unwrap_err();
    assert_eq!(r, LoginRefusal::WrongRecoveryCode);
    assert_eq!(a.totp.as_ref().unwrap().recovery.remaining(), 9);
}

#[test]
fn secretariat_always_needs_totp_even_when_off() {
    let w = World::new(SecondFactor::Off);
    let (mut a, initial) = Account::create("jimu1", Role::Secretariat, &w.at(T0)).unwrap();
    let c = change(login(Some(&mut a), &initial, &w.at(T0)).unwrap());
    enrol(c.submit(&mut a, &pw(GOOD), &w.at(T0)).unwrap());
    // Staff under "off" with an enrolment is not asked.
    let mut staff = settled(&w, Role::Staff);
    with_totp(&mut staff, T0);
    let d = done(login(Some(&mut staff), &pw(GOOD), &w.at(T0 + 60)).unwrap());
    assert_eq!(d.method, AuthMethod::Password);
}

#[test]
fn totp_comes_before_the_forced_change() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (s, _) = with_totp(&mut a, T0);
    let temp = a.issue_temporary(&w.at(T0 + 10)).unwrap();
    let t = totp_needed(login(Some(&mut a), &temp, &w.at(T0 + 60)).unwrap());
    let code = code_at(&s, step_at(T0 + 60));
    let c = change(t.code(&mut a, &code, &w.at(T0 + 60)).unwrap());
    // With TOTP enrolled the 8-character minimum applies.
    let d = done(c.submit(&mut a, &pw("kq7v-mz3x"), &w.at(T0 + 61)).unwrap());
    assert_eq!(d.method, AuthMethod::PasswordTotp);
}

#[test]
fn lock_refuses_even_the_right_password_until_unlocked() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let mut now = T0;
    for _ in 0..10 {
        while let Err(Blocked::Wait { secs }) = a.throttle.check(&w.cfg.throttle, now) {
            now += secs as i64;
        }
        assert_eq!(
            login(Some(&mut a), &pw("wrong wrong wrong"), &w.at(now)).unwrap_err(),
            LoginRefusal::WrongPassword
        );
    }
    let r = login(Some(&mut a), &pw(GOOD), &w.at(now + 1)).unwrap_err();
    assert_eq!(r.code(), "local_locked");
    a.unlock(now + 2);
    done(login(Some(&mut a), &pw(GOOD), &w.at(now + 2)).unwrap());
}

#[test]
fn disabled_is_said_only_after_the_right_password() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    a.set_disabled(true, T0);
    let r = login(Some(&mut a), &pw("a wrong guess here"), &w.at(T0)).unwrap_err();
    assert_eq!(r, LoginRefusal::WrongPassword);
    let r = login(Some(&mut a), &pw(GOOD), &w.at(T0 + 5)).unwrap_err();
    assert_eq!(r, LoginRefusal::Disabled);
    a.set_disabled(false, T0 + 10);
    done(login(Some(&mut a), &pw(GOOD), &w.at(T0 + 10)).unwrap());
}

#[test]
fn one_time_password_expires() {
    let w = World::new(SecondFactor::Optional);
    let (mut a, initial) = Account::create("u1", Role::Staff, &w.at(T0)).unwrap();
    let ttl = w.cfg.reset.initial_ttl_secs as i64;
    change(login(Some(&mut a), &initial, &w.at(T0 + ttl - 1)).unwrap());
    let r = login(Some(&mut a), &initial, &w.at(T0 + ttl)).unwrap_err();
    assert_eq!(r, LoginRefusal::TemporaryExpired);
}

#[test]
fn login_rehashes_when_the_cost_rises() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let before = a.password.clone();
    let mut raised = World::new(SecondFactor::Optional);
    raised.hasher = Hasher::new(HashParams {
        m_kib: 512,
        ..cheap()
    })
    .unwrap();
    done(login(Some(&mut a), &pw(GOOD), &raised.at(T0)).unwrap());
    assert_ne!(a.password, before);
    assert!(a.password.as_str().contains("m=512,"), "{:?}", a.password);
    done(login(Some(&mut a), &pw(GOOD), &raised.at(T0 + 1)).unwrap());
}

#[test]
fn resume_recomputes_the_step_and_refuses_stale_ones() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    with_totp(&mut a, T0);
    let step = login(Some(&mut a), &pw(GOOD), &w.at(T0 + 60)).unwrap();
    let json = serde_json::to_string(step.proven().unwrap()).unwrap();
    let proven: Proven = serde_json::from_str(&json).unwrap();
    totp_needed(LoginStep::resume(proven.clone(), &mut a, &w.at(T0 + 70)).unwrap());
    let mut other = settled(&w, Role::Staff);
    other.user_id = "u2".into();
    let r = LoginStep::resume(proven.clone(), &mut other, &w.at(T0 + 70)).unwrap_err();
    assert_eq!(r, LoginRefusal::Stale);
    a.set_disabled(true, T0 + 80);
    let r = LoginStep::resume(proven, &mut a, &w.at(T0 + 80)).unwrap_err();
    assert_eq!(r, LoginRefusal::Disabled);
}

#[test]
fn stored_record_round_trips_without_secrets_in_the_clear() {
    let w = World::new(SecondFactor::Optional);
    let (mut a, initial) = Account::create("u1", Role::Secretariat, &w.at(T0)).unwrap();
    let (_, codes) = with_totp(&mut a, T0);
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains(initial.expose()));
    assert!(codes.iter().all(|c| !json.contains(c.as_str())));
    assert!(json.contains("\"role\":\"secretariat\""));
    let back: Account = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    assert!(a.created.ends_with('Z') && a.created.starts_with("2027-01-15"));
}

#[test]
fn config_defaults_and_names() {
    let c: LocalConfig = toml::from_str("").unwrap();
    assert_eq!(c.second_factor, SecondFactor::Optional);
    assert_eq!(c.throttle.lock_after, 10);
    assert_eq!(c.password.min_single_factor, 15);
    assert_eq!(c.reset.link_ttl_secs, 1800);
    assert_eq!(c.argon2, HashParams::default());
    let c: LocalConfig =
        toml::from_str("second_factor = \"required\"\n[password]\nprofile = \"strict\"").unwrap();
    assert_eq!(c.second_factor, SecondFactor::Required);
    assert!(toml::from_str::<LocalConfig>("second_factr = \"off\"").is_err());
    assert_eq!(AuthMethod::Password.header_value(), "password");
    assert_eq!(AuthMethod::PasswordTotp.header_value(), "password+totp");
}

fn link(a: &Account, now: i64) -> (String, ResetTicket) {
    ResetTicket::issue_link(
        &a.user_id,
        a.password_version,
        now,
        &crate::accounts::reset::ResetConfig::default(),
    )
}

#[test]
fn a_reset_link_leads_into_the_change_and_works_for_one_password_only() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (token, t) = link(&a, T0 + 10);
    let (_, older) = link(&a, T0 + 11);
    // The link stands in for the password and leads into the change, though the account
    // has no must_change.
    let c = change(redeem_link(t.clone(), &token, &mut a, &w.at(T0 + 20)).unwrap());
    let d = done(
        c.submit(&mut a, &pw("another long phrase of mine"), &w.at(T0 + 30))
            .unwrap(),
    );
    assert_eq!(d.method, AuthMethod::Password);
    assert!(login(
        Some(&mut a),
        &pw("another long phrase of mine"),
        &w.at(T0 + 40)
    )
    .is_ok());
    // Every link issued before the change is now void, even unused ones.
    assert_eq!(
        redeem_link(older, "whatever", &mut a, &w.at(T0 + 50)).unwrap_err(),
        LinkRefusal::Invalid
    );
    assert_eq!(
        redeem_link(t, &token, &mut a, &w.at(T0 + 50)).unwrap_err(),
        LinkRefusal::Superseded
    );
}

#[test]
fn a_reset_link_refuses_expired_wrong_and_other_accounts_tokens() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (token, t) = link(&a, T0);
    let ttl = w.cfg.reset.link_ttl_secs as i64;
    let e = redeem_link(t.clone(), &token, &mut a, &w.at(T0 + ttl)).unwrap_err();
    assert_eq!(e, LinkRefusal::Expired);
    let e = redeem_link(t.clone(), "x", &mut a, &w.at(T0)).unwrap_err();
    assert_eq!(e, LinkRefusal::Invalid);
    let mut b = settled(&w, Role::Staff);
    b.user_id = "u2".into();
    let e = redeem_link(t.clone(), &token, &mut b, &w.at(T0)).unwrap_err();
    assert_eq!(e, LinkRefusal::Invalid);
    // Same words for all three: the page says nothing about which it was.
    assert_eq!(
        LinkRefusal::Invalid.message(),
        LinkRefusal::Expired.message()
    );
    assert_eq!(
        LinkRefusal::Invalid.message(),
        LinkRefusal::Superseded.message()
    );
    a.set_disabled(true, T0);
    let e = redeem_link(t, &token, &mut a, &w.at(T0)).unwrap_err();
    assert_eq!(e, LinkRefusal::Refused(LoginRefusal::Disabled));
}

#[test]
fn a_reset_link_does_not_skip_the_second_factor() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (secret, _) = with_totp(&mut a, T0);
    let (token, t) = link(&a, T0 + 100);
    let step = redeem_link(t, &token, &mut a, &w.at(T0 + 100)).unwrap();
    let code = code_at(&secret, step_at(T0 + 130));
    let c = change(
        totp_needed(step)
            .code(&mut a, &code, &w.at(T0 + 130))
            .unwrap(),
    );
    let d = done(
        c.submit(&mut a, &pw("another long phrase of mine"), &w.at(T0 + 140))
            .unwrap(),
    );
    assert_eq!(d.method, AuthMethod::PasswordTotp);
}

#[test]
fn a_reset_login_goes_stale_when_the_password_changes_meanwhile() {
    let w = World::new(SecondFactor::Optional);
    let mut a = settled(&w, Role::Staff);
    let (token, t) = link(&a, T0);
    let step = redeem_link(t, &token, &mut a, &w.at(T0)).unwrap();
    let proven = step.proven().unwrap().clone();
    // The 事務局 issues a one-time password before the person submits the change form.
    a.issue_temporary(&w.at(T0 + 5)).unwrap();
    let e = LoginStep::resume(proven, &mut a, &w.at(T0 + 10)).unwrap_err();
    assert_eq!(e, LoginRefusal::Stale);
}
