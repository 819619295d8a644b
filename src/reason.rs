//! Why a login was refused: one code per check, shared by logs, metrics, the
//! `X-Samlgate-Reason` header and the error page.

use hyper::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BodyTooLarge,
    BadRequest,
    BadBase64,
    BadXml,
    DoctypeForbidden,
    NotAResponse,
    AssertionCount,
    EncryptedUnsupported,
    EncryptionRequired,
    DecryptFailed,
    SignatureInvalid,
    IssuerMismatch,
    DestinationMismatch,
    StatusNotSuccess,
    AudienceMismatch,
    RecipientMismatch,
    BearerMissing,
    SubjectMissing,
    Expired,
    NotYetValid,
    IssueInstantFuture,
    IssueInstantStale,
    Replay,
    InResponseToUnknown,
    UnsolicitedRefused,
    AttributeMissing,
    Busy,
    /// The store (sled or PostgreSQL) cannot record writes right now: fail closed, with 503.
    StoreUnavailable,
    Internal,
    AuthnStatementMissing,
    SignatureAlgorithmRefused,
    /// The account was blocked, unlinked or its application changed while the login was being
    /// finished: no session is left.
    AccountChanged,
    PathRefused,
    RateLimited,
    /// `[idp] status_url` says G-MIS is down: the outage page instead of a redirect to it.
    IdpUnavailable,
}

impl Reason {
    pub const ALL: [Reason; 35] = [
        Reason::BodyTooLarge,
        Reason::BadRequest,
        Reason::BadBase64,
        Reason::BadXml,
        Reason::DoctypeForbidden,
        Reason::NotAResponse,
        Reason::AssertionCount,
        Reason::EncryptedUnsupported,
        Reason::EncryptionRequired,
        Reason::DecryptFailed,
        Reason::SignatureInvalid,
        Reason::IssuerMismatch,
        Reason::DestinationMismatch,
        Reason::StatusNotSuccess,
        Reason::AudienceMismatch,
        Reason::RecipientMismatch,
        Reason::BearerMissing,
        Reason::SubjectMissing,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssueInstantFuture,
        Reason::IssueInstantStale,
        Reason::Replay,
        Reason::InResponseToUnknown,
        Reason::UnsolicitedRefused,
        Reason::AttributeMissing,
        Reason::Busy,
        Reason::StoreUnavailable,
        Reason::Internal,
        Reason::AuthnStatementMissing,
        Reason::SignatureAlgorithmRefused,
        Reason::AccountChanged,
        Reason::PathRefused,
        Reason::RateLimited,
        Reason::IdpUnavailable,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::BodyTooLarge => "body_too_large",
            Reason::BadRequest => "bad_request",
            Reason::BadBase64 => "bad_base64",
            Reason::BadXml => "bad_xml",
            Reason::DoctypeForbidden => "doctype_forbidden",
            Reason::NotAResponse => "not_a_response",
            Reason::AssertionCount => "assertion_count",
            Reason::EncryptedUnsupported => "encrypted_unsupported",
            Reason::EncryptionRequired => "encryption_required",
            Reason::DecryptFailed => "decrypt_failed",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::DestinationMismatch => "destination_mismatch",
            Reason::StatusNotSuccess => "status_not_success",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::RecipientMismatch => "recipient_mismatch",
            Reason::BearerMissing => "bearer_missing",
            Reason::SubjectMissing => "subject_missing",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssueInstantFuture => "issue_instant_future",
            Reason::IssueInstantStale => "issue_instant_stale",
            Reason::Replay => "replay",
            Reason::InResponseToUnknown => "in_response_to_unknown",
            Reason::UnsolicitedRefused => "unsolicited_refused",
            Reason::AttributeMissing => "attribute_missing",
            Reason::Busy => "busy",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::Internal => "internal_error",
            Reason::AuthnStatementMissing => "authn_statement_missing",
            Reason::SignatureAlgorithmRefused => "signature_algorithm_refused",
            Reason::AccountChanged => "account_changed",
            Reason::PathRefused => "path_refused",
            Reason::RateLimited => "rate_limited",
            Reason::IdpUnavailable => "idp_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BadRequest
            | Reason::BadBase64
            | Reason::BadXml
            | Reason::DoctypeForbidden
            | Reason::NotAResponse
            | Reason::AssertionCount => StatusCode::BAD_REQUEST,
            Reason::Busy | Reason::StoreUnavailable | Reason::IdpUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::PathRefused => StatusCode::BAD_REQUEST,
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// What the person at the browser is told (Japanese, English). Short; the details are in
    /// the operator's log under the request id shown on the page.
    pub fn message(self) -> (&'static str, &'static str) {
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
