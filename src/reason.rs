//! The outcome vocabulary: every code an operator or a test reads (the `X-Samlgate-Reason`
//! header, an error page's code, a log line's `reason=`, a metrics label, an audit detail) is a
//! [`Reason`] and is spelled here only (`cargo test --test architecture` refuses a copy of one
//! elsewhere in src/). Each has its HTTP status and, for the pages built here, the bilingual
//! message: one table, mapped once to the answer ([`crate::web::pages::refusal_page`]).

use hyper::StatusCode;

/// Where a reason is seen; also which reasons `samlgate_logins_total` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// A login refused at the ACS or `GET /saml/login`, and the store/proxy reasons those
    /// share: counted in `samlgate_logins_total{outcome="refused"}`.
    Login,
    /// A verified login that policy ends on a terminal page (application, block, consent).
    Policy,
    /// The ID/password login, its second factor and the mailed reset link.
    Local,
    /// What became of a password reset request: audit details and log lines only; the page
    /// never says (it must not tell whether an id exists).
    ResetRequest,
    /// The 事務局 console's login.
    Console,
    /// Single logout.
    Logout,
    /// Any form, the proxy and the admin API.
    Request,
    /// A log line that changes nothing for the request: a RelayState not used.
    Note,
    /// Work no request waits for (mail delivery, IdP metadata refresh, reload): log lines and
    /// their own metrics. Their status is never sent; 500 stands for "not a request's answer".
    Background,
}

/// One line per reason: variant, wire code (never changes: operators alert on it), HTTP
/// status, group. The macro keeps `ALL`, `code`, `status` and `group` from drifting apart.
macro_rules! reasons {
    ($( $(#[$doc:meta])* $v:ident = $code:literal, $status:ident, $group:ident; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $v, )*
        }

        impl Reason {
            /// Every reason, in declaration order (the login reasons first: the metrics order).
            pub const ALL: &'static [Reason] = &[ $( Reason::$v, )* ];

            pub fn code(self) -> &'static str {
                match self { $( Reason::$v => $code, )* }
            }

            pub fn status(self) -> StatusCode {
                match self { $( Reason::$v => StatusCode::$status, )* }
            }

            pub fn group(self) -> Group {
                match self { $( Reason::$v => Group::$group, )* }
            }
        }
    };
}

reasons! {
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, Login;
    BadRequest = "bad_request", BAD_REQUEST, Login;
    BadBase64 = "bad_base64", BAD_REQUEST, Login;
    BadXml = "bad_xml", BAD_REQUEST, Login;
    DoctypeForbidden = "doctype_forbidden", BAD_REQUEST, Login;
    NotAResponse = "not_a_response", BAD_REQUEST, Login;
    AssertionCount = "assertion_count", BAD_REQUEST, Login;
    EncryptedUnsupported = "encrypted_unsupported", FORBIDDEN, Login;
    EncryptionRequired = "encryption_required", FORBIDDEN, Login;
    DecryptFailed = "decrypt_failed", FORBIDDEN, Login;
    SignatureInvalid = "signature_invalid", FORBIDDEN, Login;
    IssuerMismatch = "issuer_mismatch", FORBIDDEN, Login;
    DestinationMismatch = "destination_mismatch", FORBIDDEN, Login;
    StatusNotSuccess = "status_not_success", FORBIDDEN, Login;
    AudienceMismatch = "audience_mismatch", FORBIDDEN, Login;
    RecipientMismatch = "recipient_mismatch", FORBIDDEN, Login;
    BearerMissing = "bearer_missing", FORBIDDEN, Login;
    SubjectMissing = "subject_missing", FORBIDDEN, Login;
    Expired = "expired", FORBIDDEN, Login;
    NotYetValid = "not_yet_valid", FORBIDDEN, Login;
    IssueInstantFuture = "issue_instant_future", FORBIDDEN, Login;
    IssueInstantStale = "issue_instant_stale", FORBIDDEN, Login;
    Replay = "replay", FORBIDDEN, Login;
    InResponseToUnknown = "in_response_to_unknown", FORBIDDEN, Login;
    UnsolicitedRefused = "unsolicited_refused", FORBIDDEN, Login;
    AttributeMissing = "attribute_missing", FORBIDDEN, Login;
    Busy = "busy", SERVICE_UNAVAILABLE, Login;
    /// The store (sled or PostgreSQL) cannot record writes right now: fail closed, with 503.
    StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE, Login;
    Internal = "internal_error", INTERNAL_SERVER_ERROR, Login;
    AuthnStatementMissing = "authn_statement_missing", FORBIDDEN, Login;
    SignatureAlgorithmRefused = "signature_algorithm_refused", FORBIDDEN, Login;
    /// The account was blocked, unlinked or its application changed while the login was being
    /// finished: no session is left.
    AccountChanged = "account_changed", FORBIDDEN, Login;
    PathRefused = "path_refused", BAD_REQUEST, Login;
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, Login;
    /// `[idp] status_url` says G-MIS is down: the outage page instead of a redirect to it.
    IdpUnavailable = "idp_unavailable", SERVICE_UNAVAILABLE, Login;

    /// The category is not in `[policy] open_categories` and no application is approved.
    ApplicationNeeded = "application_needed", FORBIDDEN, Policy;
    /// A local account with the same facility and mail (or the G-MIS id) exists, unlinked.
    ApplicationNeededExistingAccount = "application_needed_existing_account", FORBIDDEN, Policy;
    ApplicationPending = "application_pending", FORBIDDEN, Policy;
    ApplicationRevoked = "application_revoked", FORBIDDEN, Policy;
    /// The approved application's `link_to` account is missing or linked to another account.
    ApplicationLinkConflict = "application_link_conflict", FORBIDDEN, Policy;
    BlockedConsentRejected = "blocked_consent_rejected", FORBIDDEN, Policy;
    BlockedBySecretariat = "blocked_by_secretariat", FORBIDDEN, Policy;
    /// The consent page was left open past its 10 minutes.
    ConsentExpired = "consent_expired", BAD_REQUEST, Policy;

    /// Also an unknown id, after a dummy hash (the answer must not tell).
    LocalWrongPassword = "local_wrong_password", UNAUTHORIZED, Local;
    LocalThrottled = "local_throttled", TOO_MANY_REQUESTS, Local;
    LocalLocked = "local_locked", TOO_MANY_REQUESTS, Local;
    LocalDisabled = "local_disabled", UNAUTHORIZED, Local;
    LocalTemporaryExpired = "local_temporary_expired", UNAUTHORIZED, Local;
    /// The stored hash cannot be read: an operator problem; fail closed.
    LocalHashUnusable = "local_hash_unusable", UNAUTHORIZED, Local;
    LocalTotpMalformed = "local_totp_malformed", UNAUTHORIZED, Local;
    LocalTotpWrong = "local_totp_wrong", UNAUTHORIZED, Local;
    LocalTotpReplayed = "local_totp_replayed", UNAUTHORIZED, Local;
    LocalRecoveryWrong = "local_recovery_wrong", UNAUTHORIZED, Local;
    LocalLoginStale = "local_login_stale", UNAUTHORIZED, Local;
    /// Unknown, used or forged.
    LocalResetLinkInvalid = "local_reset_link_invalid", GONE, Local;
    LocalResetLinkExpired = "local_reset_link_expired", GONE, Local;
    /// The password changed after the mail: the link was used, or the 事務局 reset it.
    LocalResetLinkSuperseded = "local_reset_link_superseded", GONE, Local;

    LocalUnknownId = "local_unknown_id", OK, ResetRequest;
    ResetNoAddress = "reset_no_address", OK, ResetRequest;
    ResetMailThrottled = "reset_mail_throttled", OK, ResetRequest;
    ResetMailNotConfigured = "reset_mail_not_configured", OK, ResetRequest;
    ResetMailNotQueued = "reset_mail_not_queued", OK, ResetRequest;

    /// The right password, but not a 事務局 account.
    ConsoleNotSecretariat = "console_not_secretariat", FORBIDDEN, Console;
    /// The account's first login at `/login` (password change, TOTP) is not finished.
    ConsoleSetupNeeded = "console_setup_needed", FORBIDDEN, Console;
    ConsoleTotpFailed = "console_totp_failed", UNAUTHORIZED, Console;

    SloSignatureInvalid = "slo_signature_invalid", BAD_REQUEST, Logout;
    SloBadRequest = "slo_bad_request", BAD_REQUEST, Logout;
    SloRefused = "slo_refused", BAD_REQUEST, Logout;
    /// Logged out here; the IdP's LogoutResponse was not a success.
    SloPartial = "slo_partial", OK, Logout;

    /// A form's CSRF token does not match its cookie (a stale or forged form).
    CsrfMismatch = "csrf_mismatch", FORBIDDEN, Request;
    /// The IdP metadata has no HTTP-Redirect SingleSignOnService.
    NoSsoEndpoint = "no_sso_endpoint", INTERNAL_SERVER_ERROR, Request;
    UpstreamError = "upstream_error", BAD_GATEWAY, Request;
    UpstreamTimeout = "upstream_timeout", GATEWAY_TIMEOUT, Request;
    /// The admin API's bearer token is missing or wrong.
    BadToken = "bad_token", UNAUTHORIZED, Request;

    RelayStateOtherOrigin = "relay_state_other_origin", OK, Note;
    RelayStateNotAPath = "relay_state_not_a_path", OK, Note;

    /// A changed key set, IdP metadata, token key or TLS file failed its checks: the old one
    /// keeps serving.
    ReloadRefused = "reload_refused", INTERNAL_SERVER_ERROR, Background;
    MailConnectFailed = "mail_connect_failed", INTERNAL_SERVER_ERROR, Background;
    MailTimeout = "mail_timeout", INTERNAL_SERVER_ERROR, Background;
    /// Untrusted certificate, or no STARTTLS.
    MailTlsFailed = "mail_tls_failed", INTERNAL_SERVER_ERROR, Background;
    MailAuthFailed = "mail_auth_failed", INTERNAL_SERVER_ERROR, Background;
    /// 5xx: not retried.
    MailRejected = "mail_rejected", INTERNAL_SERVER_ERROR, Background;
    /// 4xx on every attempt.
    MailDeferred = "mail_deferred", INTERNAL_SERVER_ERROR, Background;
    MailBadAddress = "mail_bad_address", INTERNAL_SERVER_ERROR, Background;
    MailQueueFull = "mail_queue_full", INTERNAL_SERVER_ERROR, Background;
    MailStopped = "mail_stopped", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataUnreachable = "idp_metadata_unreachable", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataTimeout = "idp_metadata_timeout", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataHttpStatus = "idp_metadata_http_status", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataTooLarge = "idp_metadata_too_large", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataInvalid = "idp_metadata_invalid", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataSignatureInvalid = "idp_metadata_signature_invalid", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataUntrustedCert = "idp_metadata_untrusted_cert", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataExpired = "idp_metadata_expired", INTERNAL_SERVER_ERROR, Background;
    IdpMetadataWriteFailed = "idp_metadata_write_failed", INTERNAL_SERVER_ERROR, Background;
}

/// Where a verified login went when it was not refused (`samlgate_logins_total{outcome}` and
/// the login log line's `outcome=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    NeedsConsent,
    NeedsApplication,
    Blocked,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::NeedsConsent,
        Outcome::NeedsApplication,
        Outcome::Blocked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::NeedsConsent => "consent",
            Outcome::NeedsApplication => "application_needed",
            Outcome::Blocked => "blocked",
        }
    }
}

impl Reason {
    /// The reasons `samlgate_logins_total{outcome="refused"}` counts, in its order.
    pub fn counted_as_login(self) -> bool {
        self.group() == Group::Login
    }

    /// The page's title (Japanese, English).
    pub fn title(self) -> (&'static str, &'static str) {
        match self {
            Reason::BlockedBySecretariat => (
                "G-MISからのログインは停止されています",
                "Logging in from G-MIS is suspended",
            ),
            Reason::BlockedConsentRejected => {
                ("事務局の確認待ちです", "Waiting for the secretariat")
            }
            Reason::ConsentExpired => (
                "同意画面の有効期限が切れました",
                "The consent page has expired",
            ),
            _ => ("ログインできませんでした", "Login failed"),
        }
    }

    /// What the person at the browser is told (Japanese, English). Short; the details are in
    /// the operator's log under the request id shown on the page. The pages of the `Login`
    /// reasons and of the block and consent-expired ends are built from it
    /// ([`crate::web::pages::refusal_page`]), and so are the ID/password forms' messages
    /// (`accounts::Message::of`; a throttle or lock says how long: `throttle::Blocked`). The
    /// application page (it names the category), the console login and the logout pages still
    /// word their own.
    pub fn message(self) -> (&'static str, &'static str) {
        if self.group() == Group::Local {
            return self.local_message();
        }
        match self {
            Reason::Expired | Reason::IssueInstantStale => (
                "ログイン情報の有効期限が切れています。G-MISからもう一度ログインしてください。",
                "The login has expired. Please log in again from G-MIS.",
            ),
            Reason::Replay => (
                "このログイン情報はすでに使用されています。G-MISからもう一度ログインしてください。",
                "This login was already used. Please log in again from G-MIS.",
            ),
            Reason::NotYetValid | Reason::IssueInstantFuture => (
                "ログイン情報の時刻が正しくありません。しばらくしてから再度お試しください。",
                "The login's time is not valid yet. Please try again in a moment.",
            ),
            Reason::AttributeMissing | Reason::SubjectMissing => (
                "G-MISから必要な利用者情報が届きませんでした。G-MIS事務局にお問い合わせください。",
                "G-MIS did not send the user information we need. Please contact the G-MIS secretariat.",
            ),
            Reason::BodyTooLarge => (
                "送信されたデータが大きすぎます。",
                "The request is too large.",
            ),
            Reason::Busy => (
                "ただいま混み合っています。しばらくしてから再度お試しください。",
                "The service is busy. Please try again shortly.",
            ),
            Reason::StoreUnavailable => (
                "ただいまログインを受け付けられません（一時的な障害）。しばらくしてから再度お試しください。",
                "Logins are temporarily unavailable. Please try again in a few minutes.",
            ),
            Reason::Internal => (
                "システムエラーが発生しました。しばらくしてから再度お試しください。",
                "A system error occurred. Please try again later.",
            ),
            Reason::AccountChanged => (
                "ログイン処理中にアカウントの状態が変更されたため、ログインを完了できませんでした。G-MISからもう一度ログインしてください。解決しない場合はG-MIS事務局にお問い合わせください。",
                "The account's state changed while the login was being finished, so it was not completed. Please log in again from G-MIS; if that does not help, contact the G-MIS secretariat.",
            ),
            Reason::PathRefused => (
                "このアドレスは受け付けられません。リンク元のページからやり直してください。",
                "This address is not accepted. Please go back and follow the link again.",
            ),
            Reason::RateLimited => (
                "ログインの要求が多すぎます。しばらく待ってから再度お試しください。",
                "Too many login requests. Please wait a moment and try again.",
            ),
            Reason::IdpUnavailable => (
                "G-MISは現在ご利用いただけません。医療情報ネットのID・パスワードでログインするか、しばらくしてから再度お試しください。",
                "G-MIS is currently unavailable. Log in with a Medical Information Net ID and password, or try again later.",
            ),
            Reason::BlockedBySecretariat => (
                "このアカウントのG-MISからのログインは、G-MIS事務局により停止されています。G-MIS事務局にお問い合わせください。",
                "Logging in from G-MIS is suspended for this account by the G-MIS secretariat. Please contact the secretariat.",
            ),
            Reason::BlockedConsentRejected => (
                "利用者情報の登録・連携に同意いただけなかったため、G-MISからのログインを停止しています。G-MIS事務局が理由を確認のうえ再開します。事務局からの連絡をお待ちください。",
                "Because you did not agree to register and link your user information, logging in from G-MIS is stopped. The G-MIS secretariat will confirm the reason with you and reopen it; please wait for their contact.",
            ),
            Reason::ConsentExpired => (
                "同意の確認は10分以内に行ってください。お手数ですが、G-MISからもう一度ログインしてください。",
                "Please decide within 10 minutes. Log in from G-MIS again to see the consent page.",
            ),
            Reason::InResponseToUnknown | Reason::UnsolicitedRefused => (
                "ログイン要求が見つからないか、すでに使用されています。最初からやり直してください。",
                "The login request is unknown or was already used. Please start again.",
            ),
            _ => (
                "ログイン情報を確認できませんでした。G-MISからもう一度ログインしてください。",
                "The login could not be verified. Please log in again from G-MIS.",
            ),
        }
    }

    /// The ID/password forms' messages (a throttle or lock says how long instead:
    /// `accounts::throttle::Blocked::message`).
    fn local_message(self) -> (&'static str, &'static str) {
        match self {
            Reason::LocalWrongPassword => (
                "ユーザーIDまたはパスワードが正しくありません。半角英数字で、大文字と小文字を区別して入力してください。",
                "The user ID or password is not correct. Both are case-sensitive half-width alphanumerics.",
            ),
            Reason::LocalDisabled => (
                "このアカウントは利用停止中です。事務局にお問い合わせください。",
                "This account is disabled. Contact the secretariat.",
            ),
            Reason::LocalTemporaryExpired => (
                "仮パスワードの有効期限が切れています。事務局に再発行を依頼してください。",
                "The temporary password has expired. Ask the secretariat to issue a new one.",
            ),
            Reason::LocalHashUnusable => (
                "このアカウントは現在ログインできません。事務局にお問い合わせください。",
                "This account cannot sign in at the moment. Contact the secretariat.",
            ),
            Reason::LocalTotpMalformed => (
                "認証アプリに表示されている6桁の数字を入力してください。",
                "Enter the 6-digit number shown in your authenticator app.",
            ),
            Reason::LocalTotpWrong => (
                "確認コードが正しくありません。端末の時刻が正しいか確かめ、新しいコードを入力してください。",
                "The code is not correct. Check that your device's clock is right and enter a new code.",
            ),
            Reason::LocalTotpReplayed => (
                "このコードは使用済みです。次のコードが表示されるまで待って入力してください。",
                "This code has already been used. Wait for the next code and enter it.",
            ),
            Reason::LocalRecoveryWrong => (
                "リカバリーコードが正しくないか、使用済みです。",
                "The recovery code is not correct or has already been used.",
            ),
            Reason::LocalLoginStale => (
                "ログインの手続きが無効になりました。最初からやり直してください。",
                "This sign-in is no longer valid. Start again.",
            ),
            // One message for a wrong, old or superseded link (and a 事務局 code): the way
            // forward is the same.
            Reason::LocalResetLinkInvalid
            | Reason::LocalResetLinkExpired
            | Reason::LocalResetLinkSuperseded => (
                "このリンクまたはコードは無効か、有効期限が切れています。もう一度「パスワードを忘れた方はこちら」から手続きするか、事務局にお問い合わせください。",
                "This link or code is invalid or has expired. Start again from \"Forgot your password?\" or contact the secretariat.",
            ),
            _ => (
                "ログインできませんでした。最初からやり直してください。",
                "The sign-in failed. Please start again.",
            ),
        }
    }
}

/// A refused login: the reason code and, for the operator's log only, what was expected and
/// what was received.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `samlgate_logins_total{outcome="refused",reason}` keeps its label set and order: the
    /// login reasons are the first ones, as before the other groups joined.
    #[test]
    fn the_login_metric_labels_are_unchanged() {
        let counted: Vec<&str> = Reason::ALL
            .iter()
            .filter(|r| r.counted_as_login())
            .map(|r| r.code())
            .collect();
        let want = "body_too_large bad_request bad_base64 bad_xml doctype_forbidden \
            not_a_response assertion_count encrypted_unsupported encryption_required \
            decrypt_failed signature_invalid issuer_mismatch destination_mismatch \
            status_not_success audience_mismatch recipient_mismatch bearer_missing \
            subject_missing expired not_yet_valid issue_instant_future issue_instant_stale \
            replay in_response_to_unknown unsolicited_refused attribute_missing busy \
            store_unavailable internal_error authn_statement_missing \
            signature_algorithm_refused account_changed path_refused rate_limited \
            idp_unavailable";
        assert_eq!(counted, want.split_whitespace().collect::<Vec<_>>());
        assert!(Reason::ALL[..counted.len()]
            .iter()
            .all(|r| r.counted_as_login()));
    }

    #[test]
    fn every_code_is_one_reason() {
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
