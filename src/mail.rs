//! Outgoing mail over SMTP (`[mail]`): password-reset links now, the 事務局's notices to a
//! person later. One [`Mailer`] per process; callers hand it a typed [`Mail`] and go on.
//!
//! Delivery runs on its own thread (a small tokio runtime), never on a request's path: a slow
//! or dead relay costs the page nothing, and the page says the same whether a mail was sent,
//! failed or never existed. Each mail gets a bounded number of attempts with a growing pause;
//! a transient failure is retried, a permanent one (5xx) is not. Every failure is one log line
//! with a [`MailFailure`] code for operators. Bodies carry secrets (reset links): they never
//! reach a log, only the purpose and the account they are about do.
//!
//! TLS is rustls (ring), like the rest of the gateway: STARTTLS (`tls = "starttls"`, the
//! default, port 587), implicit TLS (`"implicit"`, port 465), or plain SMTP to a relay on
//! this host only (`"none"`, port 25; a relay on loopback, or the tests' server).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::reason::Reason;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

/// A `[mail]` key that is wrong, and how to fix it (config.rs turns it into its error; kept
/// here so mail does not depend on config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: &'static str,
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config key `{}`: {}\n  fix: {}",
            self.key, self.problem, self.fix
        )
    }
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain connect, then STARTTLS, which is required (a relay that does not offer it is a
    /// failure, not a reason to send in the clear).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS: only to a relay on this host (loopback), e.g. a local MTA that relays on.
    None,
}

/// `[mail]`. Without it, "forgot password" tells people to contact the 事務局.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP relay's host name (checked against its certificate) or IP address.
    pub host: String,
    /// Default by `tls`: 587 (starttls), 465 (implicit), 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: MailTls,
    /// PEM file of the CA(s) that sign the relay's certificate. When set, only these are
    /// trusted (a private relay); when not, the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender, e.g. "医療情報ネット事務局 <noreply@iryou.example.jp>".
    pub from: String,
    /// SMTP AUTH user (with `password_file`), when the relay asks for it.
    #[serde(default)]
    pub username: Option<String>,
    /// A file that holds only the SMTP AUTH password (kept out of the config file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// For connecting and for each SMTP command.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Attempts per mail, at least 1.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Pause before the 2nd attempt; doubled before each further one.
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
    /// Mails waiting at most; more are dropped with `mail_queue_full`.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_timeout() -> u64 {
    15
}
fn default_attempts() -> u32 {
    4
}
fn default_retry() -> u64 {
    5
}
fn default_queue() -> usize {
    256
}

fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        key,
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl MailConfig {
    /// Checks every key (so `check-config` finds a bad CA file or sender before a person
    /// does) and resolves the paths.
    pub fn checked(mut self, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Self, ConfigProblem> {
        if self.host.trim().is_empty() {
            return Err(invalid(
                "mail.host",
                "is empty",
                "give the SMTP relay's host name",
            ));
        }
        if self.tls == MailTls::None && !is_loopback(&self.host) {
            return Err(invalid(
                "mail.tls",
                format!("\"none\" sends reset links in the clear to {}", self.host),
                "use \"starttls\" or \"implicit\"; \"none\" is only for a relay on 127.0.0.1/::1",
            ));
        }
        self.from.parse::<Mailbox>().map_err(|e| {
            invalid(
                "mail.from",
                format!("`{}` is not a mail address: {e}", self.from),
                "e.g. \"医療情報ネット事務局 <noreply@example.jp>\"",
            )
        })?;
        if let Some(ca) = self.ca_file.take() {
            let ca = resolve(&ca);
            let pem = std::fs::read(&ca).map_err(|e| {
                invalid(
                    "mail.ca_file",
                    format!("{}: {e}", ca.display()),
                    "give a PEM file",
                )
            })?;
            Certificate::from_pem(&pem).map_err(|e| {
                invalid(
                    "mail.ca_file",
                    format!("{}: {e}", ca.display()),
                    "give the relay's CA certificate(s) in PEM",
                )
            })?;
            self.ca_file = Some(ca);
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(invalid(
                "mail.username",
                "username and password_file go together",
                "set both for SMTP AUTH, or neither",
            ));
        }
        self.password_file = self.password_file.take().map(|p| resolve(&p));
        if self.attempts == 0 || self.attempts > 20 {
            return Err(invalid(
                "mail.attempts",
                "out of range",
                "use 1..=20 (default 4)",
            ));
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err(invalid(
                "mail.timeout_seconds",
                "out of range",
                "use 1..=300 (default 15)",
            ));
        }
        if self.queue == 0 {
            return Err(invalid("mail.queue", "must be at least 1", "default 256"));
        }
        Ok(self)
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            MailTls::Starttls => 587,
            MailTls::Implicit => 465,
            MailTls::None => 25,
        })
    }
}

/// One mail: plain text, Japanese first then English, to one person.
#[derive(Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// What the log line names instead of the body: the account (user id) it is about.
    pub about: String,
    /// A short fixed label for the log, e.g. "password_reset", "console.account_added".
    pub purpose: &'static str,
    pub subject: String,
    /// Secret-bearing: never logged, never `Debug`-printed.
    pub body: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("purpose", &self.purpose)
            .field("about", &self.about)
            .finish_non_exhaustive()
    }
}

impl Mail {
    /// A bilingual notice: subject "JA / EN", body the Japanese text, a rule, the English.
    pub fn bilingual(
        purpose: &'static str,
        to: &str,
        about: &str,
        subject: (&str, &str),
        body: (&str, &str),
    ) -> Mail {
        Mail {
            to: to.to_string(),
            about: about.to_string(),
            purpose,
            subject: format!("【医療情報ネット】{} / {}", subject.0, subject.1),
            body: format!(
                "{}\n\n----------------------------------------\n\n{}\n",
                body.0.trim_end(),
                body.1.trim_end()
            ),
        }
    }

    /// The "forgot password" link: single use, valid `minutes`.
    pub fn password_reset(to: &str, user_id: &str, link: &str, minutes: u64) -> Mail {
        let ja = format!(
            "ユーザーID {user_id} のパスワード再設定の手続きを受け付けました。\n\
             次のリンクを開き、新しいパスワードを設定してください。\n\n{link}\n\n\
             このリンクは{minutes}分間有効で、一度だけ使えます。\n\
             お心当たりがない場合は、このメールを破棄してください。パスワードは変更されません。\n\
             このメールは送信専用です。ご不明な点は事務局にお問い合わせください。"
        );
        let en = format!(
            "We received a request to reset the password of the user ID {user_id}.\n\
             Open the link below and set a new password.\n\n{link}\n\n\
             The link works once, for {minutes} minutes.\n\
             If you did not ask for this, delete this mail: your password stays as it is.\n\
             Replies to this address are not read; contact the secretariat with questions."
        );
        Mail::bilingual(
            "password_reset",
            to,
            user_id,
            ("パスワード再設定のご案内", "Resetting your password"),
            (&ja, &en),
        )
    }
}

/// Why a mail was not delivered: the operator's reason code in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFailure {
    /// The relay could not be reached (refused, unreachable, name not resolved).
    Connect,
    Timeout,
    /// The TLS handshake failed (certificate not trusted, no STARTTLS offered).
    Tls,
    /// The relay refused our credentials (535).
    Auth,
    /// The relay refused the mail for good (5xx): not retried.
    Rejected,
    /// The relay answered 4xx on every attempt.
    Deferred,
    /// The recipient or sender is not an address (the account's mail is malformed).
    Address,
    /// Too many mails waiting; this one was dropped.
    QueueFull,
    /// The mail thread has stopped.
    Stopped,
}

impl MailFailure {
    pub fn code(self) -> &'static str {
        self.reason().code()
    }

    pub fn reason(self) -> Reason {
        match self {
            MailFailure::Connect => Reason::MailConnectFailed,
            MailFailure::Timeout => Reason::MailTimeout,
            MailFailure::Tls => Reason::MailTlsFailed,
            MailFailure::Auth => Reason::MailAuthFailed,
            MailFailure::Rejected => Reason::MailRejected,
            MailFailure::Deferred => Reason::MailDeferred,
            MailFailure::Address => Reason::MailBadAddress,
            MailFailure::QueueFull => Reason::MailQueueFull,
            MailFailure::Stopped => Reason::MailStopped,
        }
    }

    fn of(e: &lettre::transport::smtp::Error) -> MailFailure {
        if e.is_timeout() {
            MailFailure::Timeout
        } else if e.is_tls() || caused_by_tls(e) {
            MailFailure::Tls
        } else if e.is_permanent() {
            match e.status().map(|c| c.to_string()) {
                Some(c) if c == "535" || c == "530" => MailFailure::Auth,
                _ => MailFailure::Rejected,
            }
        } else if e.is_transient() {
            MailFailure::Deferred
        } else {
            MailFailure::Connect
        }
    }

    /// Worth another attempt later.
    fn transient(self) -> bool {
        matches!(
            self,
            MailFailure::Connect | MailFailure::Timeout | MailFailure::Deferred | MailFailure::Tls
        )
    }
}

/// lettre reports a handshake failure (an untrusted certificate) as a connection error; the
/// rustls error inside says what it was.
fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_rustls::rustls;
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|i| i.is::<rustls::Error>());
        if inner {
            return true;
        }
        cur = err.source();
    }
    false
}

struct Job {
    mail: Mail,
    done: Option<std::sync::mpsc::Sender<Result<(), MailFailure>>>,
}

/// The process's mail queue. Cheap to clone; every clone feeds the same thread.
#[derive(Clone)]
pub struct Mailer {
    tx: tokio::sync::mpsc::Sender<Job>,
}

/// Mails in flight at once (each is one SMTP connection).
const PARALLEL: usize = 4;

impl Mailer {
    /// Starts the mail thread. Fails on what config checking cannot see (the password file).
    pub fn start(cfg: &MailConfig) -> Result<Mailer, String> {
        let transport = Arc::new(transport(cfg)?);
        let from: Mailbox = cfg.from.parse().map_err(|e| format!("[mail] from: {e}"))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(cfg.queue);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("[mail]: runtime: {e}"))?;
        let retry = Retry {
            attempts: cfg.attempts,
            first_pause: Duration::from_secs(cfg.retry_seconds),
        };
        std::thread::Builder::new()
            .name("samlgate-mail".into())
            .spawn(move || rt.block_on(run(rx, transport, from, retry)))
            .map_err(|e| format!("[mail]: thread: {e}"))?;
        Ok(Mailer { tx })
    }

    /// Queues `mail` and returns at once (request handlers, the admin API). The outcome is
    /// logged; `Err` only when it could not even be queued (also logged).
    pub fn send(&self, mail: Mail) -> Result<(), MailFailure> {
        self.queue(Job { mail, done: None })
    }

    /// Queues `mail` and waits until it is delivered or given up (the CLI, which would
    /// otherwise exit first). Blocks the calling thread: not for async handlers.
    pub fn send_wait(&self, mail: Mail) -> Result<(), MailFailure> {
        let (done, rx) = std::sync::mpsc::channel();
        self.queue(Job {
            mail,
            done: Some(done),
        })?;
        rx.recv().unwrap_or(Err(MailFailure::Stopped))
    }

    fn queue(&self, job: Job) -> Result<(), MailFailure> {
        let (purpose, about) = (job.mail.purpose, job.mail.about.clone());
        let failure = match self.tx.try_send(job) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => MailFailure::QueueFull,
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => MailFailure::Stopped,
        };
        tracing::error!(target: "samlgate::mail", purpose, about = %about, reason = failure.code(), "mail not queued");
        Err(failure)
    }
}

fn transport(cfg: &MailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
        .port(cfg.port())
        .timeout(Some(Duration::from_secs(cfg.timeout_seconds)));
    if cfg.tls != MailTls::None {
        let mut p = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("[mail] ca_file: {e}"))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("[mail] ca_file: {e}"))?;
            p = p
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        let p = p
            .build_rustls()
            .map_err(|e| format!("[mail] TLS setup: {e}"))?;
        b = b.tls(match cfg.tls {
            MailTls::Implicit => Tls::Wrapper(p),
            _ => Tls::Required(p),
        });
    }
    if let (Some(user), Some(file)) = (&cfg.username, &cfg.password_file) {
        let pw = std::fs::read_to_string(file)
            .map_err(|e| format!("[mail] password_file {}: {e}", file.display()))?;
        b = b.credentials(Credentials::new(user.clone(), pw.trim_end().to_string()));
    }
    Ok(b.build())
}

#[derive(Clone, Copy)]
struct Retry {
    attempts: u32,
    first_pause: Duration,
}

async fn run(
    mut rx: tokio::sync::mpsc::Receiver<Job>,
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    retry: Retry,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    while let Some(job) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (t, from) = (transport.clone(), from.clone());
        tokio::spawn(async move {
            let r = deliver(&t, &from, &job.mail, retry).await;
            if let Some(done) = job.done {
                let _ = done.send(r);
            }
            drop(slot);
        });
    }
}

/// Builds and sends one mail with bounded retries; logs each failed attempt and the outcome.
async fn deliver(
    t: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    mail: &Mail,
    retry: Retry,
) -> Result<(), MailFailure> {
    let (purpose, about) = (mail.purpose, mail.about.as_str());
    let msg = match build(from, mail) {
        Ok(m) => m,
        Err(f) => {
            tracing::error!(target: "samlgate::mail", purpose, about, reason = f.code(), "mail not sent: bad address");
            return Err(f);
        }
    };
    let mut pause = retry.first_pause;
    for attempt in 1..=retry.attempts {
        let failure = match t.send(msg.clone()).await {
            Ok(_) => {
                tracing::info!(target: "samlgate::mail", purpose, about, attempt, "mail sent");
                return Ok(());
            }
            Err(e) => (MailFailure::of(&e), e),
        };
        let (f, e) = failure;
        let last = attempt == retry.attempts || !f.transient();
        if last {
            tracing::error!(target: "samlgate::mail", purpose, about, attempt, reason = f.code(), error = %e, "mail not sent: gave up");
            return Err(f);
        }
        tracing::warn!(target: "samlgate::mail", purpose, about, attempt, reason = f.code(), error = %e, "mail attempt failed; will retry");
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
    Err(MailFailure::Stopped)
}

fn build(from: &Mailbox, mail: &Mail) -> Result<Message, MailFailure> {
    let to: Mailbox = mail.to.parse().map_err(|_| MailFailure::Address)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|_| MailFailure::Address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> Result<MailConfig, ConfigProblem> {
        let c: MailConfig = toml::from_str(toml_text).unwrap();
        c.checked(&|p: &Path| Path::new("/etc/samlgate").join(p))
    }

    #[test]
    fn plain_smtp_is_refused_except_to_loopback() {
        let e = cfg("host = \"smtp.example.jp\"\ntls = \"none\"\nfrom = \"a@example.jp\"");
        assert!(e.unwrap_err().to_string().contains("mail.tls"));
        for h in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            let c = cfg(&format!(
                "host = \"{h}\"\ntls = \"none\"\nfrom = \"a@example.jp\""
            ));
            assert_eq!(c.unwrap().port(), 25, "{h}");
        }
        let c = cfg("host = \"smtp.example.jp\"\nfrom = \"a@example.jp\"").unwrap();
        assert_eq!((c.tls, c.port()), (MailTls::Starttls, 587));
        let c = cfg("host = \"h\"\ntls = \"implicit\"\nfrom = \"a@example.jp\"").unwrap();
        assert_eq!(c.port(), 465);
    }

    #[test]
    fn bad_sender_ca_and_half_auth_are_named() {
        let e = cfg("host = \"h\"\nfrom = \"not an address\"").unwrap_err();
        assert!(e.to_string().contains("mail.from"), "{e}");
        let e = cfg("host = \"h\"\nfrom = \"a@b.jp\"\nca_file = \"/nonexistent.pem\"").unwrap_err();
        assert!(e.to_string().contains("mail.ca_file"), "{e}");
        let e = cfg("host = \"h\"\nfrom = \"a@b.jp\"\nusername = \"u\"").unwrap_err();
        assert!(e.to_string().contains("mail.username"), "{e}");
        let e = cfg("host = \"h\"\nfrom = \"a@b.jp\"\nattempts = 0").unwrap_err();
        assert!(e.to_string().contains("mail.attempts"), "{e}");
    }

    #[test]
    fn the_reset_mail_is_bilingual_and_its_debug_hides_the_body() {
        let m = Mail::password_reset(
            "h@example.jp",
            "hanako",
            "https://gw/login/reset?token=SECRET",
            30,
        );
        assert!(m.subject.starts_with("【医療情報ネット】パスワード再設定"));
        let ja = m.body.find("有効").unwrap();
        let en = m.body.find("works once").unwrap();
        assert!(ja < en, "Japanese first");
        assert_eq!(m.body.matches("token=SECRET").count(), 2);
        assert!(!format!("{m:?}").contains("SECRET"));
        let from: Mailbox = "医療情報ネット事務局 <noreply@example.jp>".parse().unwrap();
        let raw = String::from_utf8(build(&from, &m).unwrap().formatted()).unwrap();
        assert!(raw.contains("Subject: =?utf-8?"), "encoded subject:\n{raw}");
        let bad = Mail {
            to: "no address".into(),
            ..m
        };
        assert_eq!(build(&from, &bad).unwrap_err(), MailFailure::Address);
    }
}
