//! `[[notify]]`: notification sinks (a webhook or an SMTP server) and the events
//! each one gets. Secrets stay in files: the config holds their paths only, so it
//! can be logged, compared and shown by `/v1/config` without leaking them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every notice event a sink may subscribe to (`events`).
pub const EVENTS: &[&str] = &[
    "decision_executed",
    "action_failed",
    "approval_pending",
    "unreachable",
    "reachable",
    "ceiling_reached",
    "test",
];
/// Notices waiting per sink by default (`queue`); beyond, the oldest is dropped.
pub const QUEUE: usize = 256;
/// Delivery attempts per notice by default (`attempts`: the first and three retries).
pub const ATTEMPTS: u32 = 4;

/// One `[[notify]]` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The sink's label in logs and metrics: `name`, else `notify[i]`.
    pub name: String,
    /// Event names this sink gets; empty means all of them.
    pub events: Vec<String>,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// Attempts per notice (the first and the retries), 1..=10.
    pub attempts: u32,
    /// Notices waiting for this sink; beyond, the oldest is dropped.
    pub queue: usize,
    pub kind: Kind,
}

impl Notify {
    /// Whether the sink gets events named `kind` (see `notify::Notice::kind`).
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

impl Notify {
    /// `webhook:<format> <origin>` or `email <host>:<port>`, for logs (no secrets).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Webhook(w) => format!("webhook:{} {}", w.format.as_str(), origin(&w.url)),
            Kind::Email(e) => format!("email {}:{}", e.smtp_host, e.smtp_port),
        }
    }
}

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Webhook(Webhook),
    Email(Email),
}

/// `kind = "webhook"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `http://` or `https://`; may carry a secret (Slack webhook paths, ntfy
    /// topics), so only its origin is ever shown.
    pub url: String,
    pub format: Format,
    /// HMAC-SHA256 key of `X-Autoscale-Signature`.
    pub secret_file: Option<PathBuf>,
    /// Gotify: `X-Gotify-Key`; otherwise `Authorization: Bearer`.
    pub token_file: Option<PathBuf>,
    /// PEM certificates to trust instead of the built-in roots (a private CA, or a
    /// self-signed receiver's own certificate).
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &origin(&self.url))
            .field("format", &self.format)
            .field("secret_file", &self.secret_file)
            .field("token_file", &self.token_file)
            .field("ca", &self.ca)
            .finish()
    }
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The notice as JSON plus a `message` line.
    Json,
    /// Slack-compatible incoming webhook: `{"text": ...}` (Mattermost, Rocket.Chat, ...).
    Slack,
    /// Gotify `POST /message`: `{"title", "message", "priority"}`.
    Gotify,
    /// ntfy: the message as plain text, `Title` and `Tags` headers.
    Ntfy,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
            Self::Gotify => "gotify",
            Self::Ntfy => "ntfy",
        }
    }
}

/// `kind = "email"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Require STARTTLS; `false` sends in the clear (a relay on localhost only).
    pub starttls: bool,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates to trust for STARTTLS instead of the system's (a private
    /// CA that signed the server's certificate).
    pub ca: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

/// The origin (`scheme://host:port`) of a URL, for logs: paths may hold secrets.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "<invalid url>".into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    kind: String,
    name: Option<String>,
    events: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    attempts: Option<i64>,
    queue: Option<i64>,
    // webhook
    url: Option<String>,
    format: Option<Format>,
    secret_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    // email
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    starttls: Option<bool>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    to: Option<Vec<String>>,
}

const WEBHOOK_KEYS: &[&str] = &["url", "format", "secret_file", "token_file"];
const EMAIL_KEYS: &[&str] = &[
    "smtp_host",
    "smtp_port",
    "starttls",
    "username",
    "password_file",
    "from",
    "to",
];

/// Parse `[[notify]]`; every problem names its key.
pub(super) fn notify(
    v: Option<toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<Notify> {
    let items = match v {
        None => return Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            problems.push("notify: must be an array of tables ([[notify]])".into());
            return Vec::new();
        }
    };
    let mut out: Vec<Notify> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("notify[{i}]");
        let present: Vec<String> = match &item {
            toml::Value::Table(t) => t.keys().cloned().collect(),
            _ => {
                problems.push(format!("{at}: must be a table"));
                continue;
            }
        };
        let f = match NotifyFile::deserialize(item) {
            Ok(f) => f,
            Err(e) => {
                problems.push(super::de_error(&at, &e));
                continue;
            }
        };
        if let Some(n) = sink(f, &present, &at, base, problems) {
            if let Some(j) = out.iter().position(|o| o.name == n.name) {
                problems.push(format!(
                    "{at}.name: {:?} is already the name of notify[{j}]",
                    n.name
                ));
            }
            out.push(n);
        }
    }
    out
}

fn sink(
    f: NotifyFile,
    present: &[String],
    at: &str,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<Notify> {
    let before = problems.len();
    let foreign: &[&str] = match f.kind.as_str() {
        "webhook" => EMAIL_KEYS,
        "email" => WEBHOOK_KEYS,
        other => {
            problems.push(format!(
                "{at}.kind: unknown kind {other:?}; one of \"webhook\", \"email\""
            ));
            return None;
        }
    };
    for k in present.iter().filter(|k| foreign.contains(&k.as_str())) {
        problems.push(format!("{at}.{k}: not a key of kind = {:?}", f.kind));
    }
    let events = f.events.unwrap_or_default();
    for (j, e) in events.iter().enumerate() {
        if !EVENTS.contains(&e.as_str()) {
            problems.push(format!(
                "{at}.events[{j}]: unknown event {e:?}; one of {}",
                EVENTS.join(", ")
            ));
        }
    }
    let timeout = f.timeout.unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        problems.push(format!(
            "{at}.timeout: {} is out of range (more than 0s, at most 5m)",
            humantime::format_duration(timeout)
        ));
    }
    let attempts = f.attempts.unwrap_or(i64::from(ATTEMPTS));
    if !(1..=10).contains(&attempts) {
        problems.push(format!(
            "{at}.attempts: {attempts} is out of range (1 to 10)"
        ));
    }
    let queue = f.queue.unwrap_or(QUEUE as i64);
    if !(1..=100_000).contains(&queue) {
        problems.push(format!("{at}.queue: {queue} is out of range (1 to 100000)"));
    }
    let file = |key: &str, p: Option<PathBuf>, problems: &mut Vec<String>| {
        let p = p.map(|p| if p.is_absolute() { p } else { base.join(p) })?;
        // Only that it exists: contents are read when the sink starts, never kept here.
        if let Err(e) = std::fs::metadata(&p) {
            problems.push(format!("{at}.{key}: {}: {e}", p.display()));
        }
        Some(p)
    };
    let kind = if f.kind == "webhook" {
        let url = match f.url {
            None => {
                problems.push(format!("{at}: missing key url"));
                String::new()
            }
            Some(u) => {
                match reqwest::Url::parse(&u) {
                    Ok(p) if f.ca.is_some() && p.scheme() != "https" => problems.push(format!(
                        "{at}.ca: set, but url is not https:// (a CA only matters for TLS)"
                    )),
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.has_host() => {}
                    // Never echo the URL: its path may be a secret.
                    _ => problems.push(format!(
                        "{at}.url: not an http:// or https:// URL with a host"
                    )),
                }
                u
            }
        };
        Kind::Webhook(Webhook {
            url,
            format: f.format.unwrap_or(Format::Json),
            secret_file: file("secret_file", f.secret_file, problems),
            token_file: file("token_file", f.token_file, problems),
            ca: file("ca", f.ca, problems),
        })
    } else {
        let mut need = |key: &str, v: Option<String>| match v {
            Some(s) if !s.trim().is_empty() => s,
            _ => {
                problems.push(format!("{at}: missing key {key}"));
                String::new()
            }
        };
        let smtp_host = need("smtp_host", f.smtp_host);
        let from = need("from", f.from);
        let to = f.to.unwrap_or_default();
        if to.is_empty() {
            problems.push(format!("{at}.to: at least one address"));
        }
        if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!("{at}.from: {from:?} is not an email address"));
        }
        for (j, t) in to.iter().enumerate() {
            if t.parse::<lettre::message::Mailbox>().is_err() {
                problems.push(format!("{at}.to[{j}]: {t:?} is not an email address"));
            }
        }
        let password_file = file("password_file", f.password_file, problems);
        if f.username.is_some() != password_file.is_some() {
            problems.push(format!(
                "{at}.username: username and password_file go together"
            ));
        }
        let starttls = f.starttls.unwrap_or(true);
        if f.ca.is_some() && !starttls {
            problems.push(format!(
                "{at}.ca: set, but starttls = false (a CA only matters for TLS)"
            ));
        }
        Kind::Email(Email {
            smtp_host,
            smtp_port: f.smtp_port.unwrap_or(587),
            starttls,
            username: f.username,
            password_file,
            ca: file("ca", f.ca, problems),
            from,
            to,
        })
    };
    (problems.len() == before).then(|| Notify {
        name: f.name.unwrap_or_else(|| at.to_string()),
        events,
        timeout,
        attempts: u32::try_from(attempts).unwrap_or(1),
        queue: usize::try_from(queue).unwrap_or(1),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::super::problems;
    use super::*;

    #[test]
    fn webhook_defaults_and_email_defaults() {
        let dir = std::env::temp_dir().join(format!("aa-notify-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret").unwrap();
        let text = "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example/T0/B0/XYZ\"\nsecret_file = \"secret\"\n\
            [[notify]]\nkind = \"email\"\nname = \"ops\"\nsmtp_host = \"mail.example\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\nevents = [\"action_failed\"]\n";
        let c = crate::config::Config::parse(text, &dir.join("c.toml")).unwrap();
        assert_eq!(c.notify.len(), 2);
        assert_eq!(c.notify[0].name, "notify[0]");
        assert!(c.notify[0].wants("decision_executed"));
        let Kind::Webhook(w) = &c.notify[0].kind else {
            panic!()
        };
        assert_eq!(w.format, Format::Json);
        assert_eq!(w.secret_file.as_deref(), Some(dir.join("secret").as_path()));
        // The URL path (a Slack token here) never shows in Debug.
        let dbg = format!("{:?}", c.notify[0]);
        assert!(
            !dbg.contains("XYZ") && dbg.contains("https://hooks.example"),
            "{dbg}"
        );
        let Kind::Email(e) = &c.notify[1].kind else {
            panic!()
        };
        assert_eq!((e.smtp_port, e.starttls), (587, true));
        assert!(!c.notify[1].wants("decision_executed") && c.notify[1].wants("action_failed"));
        assert_eq!(c.notify[0].timeout, Duration::from_secs(10));
        assert_eq!((c.notify[0].attempts, c.notify[0].queue), (4, 256));
    }

    #[test]
    fn each_problem_names_its_key() {
        let cases = [
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nevents = [\"x\"]\n",
                "notify[0].events[0]: unknown event \"x\"; one of decision_executed,",
            ),
            (
                "[[notify]]\nkind = \"pager\"\n",
                "notify[0].kind: unknown kind \"pager\"",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\n",
                "notify[0]: missing key url",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"ftp://h/secretpath\"\n",
                "notify[0].url: not an http:// or https:// URL",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nformat = \"teams\"\n",
                "notify[0].format: unknown variant `teams`",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nsmtp_host = \"m\"\n",
                "notify[0].smtp_host: not a key of kind = \"webhook\"",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nsecret_file = \"/nonexistent/s\"\n",
                "notify[0].secret_file: /nonexistent/s:",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\ntimeout = \"0s\"\n",
                "notify[0].timeout: 0s is out of range",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nattempts = 0\n",
                "notify[0].attempts: 0 is out of range (1 to 10)",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nqueue = 1000000\n",
                "notify[0].queue: 1000000 is out of range (1 to 100000)",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nurll = 1\n",
                "notify[0]: unknown field `urll`",
            ),
            (
                "[[notify]]\nkind = \"email\"\nto = [\"x@y.z\"]\nfrom = \"a@b.c\"\n",
                "notify[0]: missing key smtp_host",
            ),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b.c\"\nto = [\"nope\"]\n",
                "notify[0].to[0]: \"nope\" is not an email address",
            ),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b.c\"\nto = []\n",
                "notify[0].to: at least one address",
            ),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nusername = \"u\"\n",
                "notify[0].username: username and password_file go together",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nname = \"a\"\n[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\nname = \"a\"\n",
                "notify[1].name: \"a\" is already the name of notify[0]",
            ),
            (
                "[notify]\nkind = \"webhook\"\n",
                "notify: must be an array of tables",
            ),
        ];
        for (text, want) in cases {
            let got = problems(text);
            assert!(
                got.iter().any(|p| p.contains(want)),
                "{text:?}: {got:?} lacks {want:?}"
            );
            assert!(!got.iter().any(|p| p.contains("secretpath")), "{got:?}");
        }
    }
}
