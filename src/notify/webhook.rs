//! `kind = "webhook"`: one POST per notice. The body depends on `format`; with
//! `secret_file`, `X-Autoscale-Signature: sha256=<hex>` is the HMAC-SHA256 of the
//! exact body bytes, so a receiver can check it before parsing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::hmac;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::json;

use super::{Envelope, Failure};
use crate::config::notify::{self, Format};

/// The signature header.
pub const SIGNATURE: &str = "x-autoscale-signature";
/// The event name header (every format).
pub const EVENT: &str = "x-autoscale-event";

/// A webhook sink with its secrets loaded.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    format: Format,
    key: Option<hmac::Key>,
    token: Option<HeaderValue>,
    /// The `ca` file, named when a certificate is refused.
    ca: Option<PathBuf>,
}

/// What to POST: body, content type and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

/// Read a secret file: trimmed, non-empty. The error names the file, not the contents.
pub(super) fn read_secret(key: &str, path: &Path) -> Result<String, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{key}: {}: {e}", path.display()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(format!("{key}: {}: empty", path.display()));
    }
    Ok(s)
}

/// A failed request as text: `e` and its sources joined with ": ", without the URL
/// (its path may be a secret: Slack, ntfy topics). A certificate the receiver
/// presented and we refused is said in plain words instead of rustls' debug form.
fn describe(e: reqwest::Error, ca: Option<&Path>) -> String {
    let e = e.without_url();
    let mut parts = Vec::new();
    let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = link {
        if let Some(plain) = rustls_error(c).and_then(|r| certificate_refused(r, ca)) {
            parts.push(plain);
            break;
        }
        parts.push(c.to_string());
        link = c.source();
    }
    parts.join(": ")
}

/// The rustls error in `e`, which TLS streams carry inside an `io::Error`, itself
/// wrapped in another by hyper-rustls (`io::Error::source()` skips its payload).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    loop {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// The common certificate verdicts as a sentence; `None` for anything else.
fn certificate_refused(e: &rustls::Error, ca: Option<&Path>) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    Some(match c {
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "certificate name does not match host".into()
        }
        C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
        // No path to a trusted root: unknown or mismatched issuer (same name, other
        // key), or a CA certificate presented as the leaf (webpki's `Other`).
        C::UnknownIssuer
        | C::BadSignature
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
        | C::Other(_) => {
            let by = match ca {
                Some(p) => format!("ca file {}", p.display()),
                None => "the system's root certificates".into(),
            };
            // Which check failed, briefly, for the operator who has to fix it.
            let detail = match c {
                C::BadSignature => " (bad signature)".to_string(),
                C::Other(o) => format!(" ({o})"),
                C::UnknownIssuer => String::new(),
                _ => " (unsupported signature algorithm)".into(),
            };
            format!("certificate not trusted by {by}{detail}")
        }
        _ => return None,
    })
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    signature(&hmac::Key::new(hmac::HMAC_SHA256, secret), body)
}

fn signature(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let mut s = String::from("sha256=");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The request `format` makes of `e` (unsigned, without the token).
pub fn request(format: Format, e: &Envelope) -> Request {
    let kind = e.notice.kind();
    let mut headers = vec![(EVENT, kind.to_string())];
    let (body, content_type) = match format {
        Format::Json => (e.json().to_string(), "application/json"),
        Format::Slack => (
            json!({ "text": format!("*{}*\n{}", e.title(), e.message()) }).to_string(),
            "application/json",
        ),
        Format::Gotify => {
            let priority = if e.urgent() { 8 } else { 4 };
            let body = json!({
                "title": e.title(),
                "message": e.message(),
                "priority": priority,
                "extras": { "albatross-autoscale::notice": e.json() },
            });
            (body.to_string(), "application/json")
        }
        Format::Ntfy => {
            // ntfy headers are latin-1; keep the title ASCII.
            let title: String = e.title().chars().filter(char::is_ascii).collect();
            headers.push(("title", title));
            let tag = if e.urgent() { "warning" } else { "gear" };
            headers.push(("tags", format!("{tag},{kind}")));
            headers.push(("priority", if e.urgent() { "4" } else { "3" }.into()));
            (e.message(), "text/plain; charset=utf-8")
        }
    };
    Request {
        body: body.into_bytes(),
        content_type,
        headers,
    }
}

impl Webhook {
    /// Read the secret and token files and build the client.
    pub fn open(w: &notify::Webhook, timeout: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(&w.url).map_err(|_| "url: not a valid URL".to_string())?;
        let key = match &w.secret_file {
            Some(p) => Some(hmac::Key::new(
                hmac::HMAC_SHA256,
                read_secret("secret_file", p)?.as_bytes(),
            )),
            None => None,
        };
        let token = match &w.token_file {
            Some(p) => {
                let t = read_secret("token_file", p)?;
                let v = if w.format == Format::Gotify {
                    t
                } else {
                    format!("Bearer {t}")
                };
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    format!(
                        "token_file: {}: contains characters not allowed in a header",
                        p.display()
                    )
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut builder = reqwest::Client::builder();
        if let Some(p) = &w.ca {
            // Our verifier: the file's certificates as roots, and a self-signed
            // receiver's own certificate even with CA:TRUE (see crate::cert).
            let tls = crate::cert::ca_file_client_config(
                crate::cert::read_ca_file(p).map_err(|e| format!("ca: {e}"))?,
            )
            .map_err(|e| format!("ca: {}: {e}", p.display()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder
            .timeout(timeout)
            .connect_timeout(timeout)
            // A webhook answers; it does not send us elsewhere with our signature.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
        Ok(Self {
            client,
            url,
            format: w.format,
            key,
            token,
            ca: w.ca.clone(),
        })
    }

    /// One POST; a 2xx answer is success.
    pub(super) async fn send(&self, e: &Envelope) -> Result<(), Failure> {
        let req = request(self.format, e);
        let mut b = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, req.content_type);
        for (k, v) in &req.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                b = b.header(HeaderName::from_static(k), v);
            }
        }
        if let Some(key) = &self.key {
            b = b.header(SIGNATURE, signature(key, &req.body));
        }
        if let Some(t) = &self.token {
            let name = if self.format == Format::Gotify {
                HeaderName::from_static("x-gotify-key")
            } else {
                reqwest::header::AUTHORIZATION
            };
            b = b.header(name, t.clone());
        }
        let resp = b
            .body(req.body)
            .send()
            .await
            .map_err(|e| Failure::transient(describe(e, self.ca.as_deref())))?;
        let status = resp.status();
        let code = status.as_u16();
        match code {
            200..=299 => Ok(()),
            // The request itself is refused (bad token, gone URL): retrying will not help.
            400..=499 if code != 408 && code != 429 => {
                Err(Failure::permanent(format!("HTTP {status}")))
            }
            _ => Err(Failure::transient(format!("HTTP {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notice;

    fn failed() -> Envelope {
        Envelope::now(Notice::ActionFailed {
            group: "alice:web".into(),
            instance: "alice:web-clone-1".into(),
            action: "scale_up".into(),
            reason: "albatross: out of memory".into(),
        })
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn presets_shape_body_and_headers() {
        let e = failed();
        let j = request(Format::Json, &e);
        let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
        assert_eq!(v["group"], "alice:web");
        assert_eq!(v["action"], "scale_up");
        assert!(j.headers.contains(&(EVENT, "action_failed".into())));

        let s: serde_json::Value =
            serde_json::from_slice(&request(Format::Slack, &e).body).unwrap();
        let text = s["text"].as_str().unwrap();
        assert!(
            text.contains("alice:web-clone-1 failed: albatross: out of memory"),
            "{text}"
        );
        assert_eq!(s.as_object().unwrap().len(), 1);

        let g: serde_json::Value =
            serde_json::from_slice(&request(Format::Gotify, &e).body).unwrap();
        assert_eq!(g["priority"], 8);
        assert_eq!(
            g["title"],
            "albatross-autoscale: scale_up failed in alice:web"
        );
        assert!(g["message"].as_str().unwrap().contains("out of memory"));

        let n = request(Format::Ntfy, &e);
        assert_eq!(n.content_type, "text/plain; charset=utf-8");
        assert_eq!(String::from_utf8(n.body).unwrap(), e.message());
        assert!(
            n.headers
                .contains(&("tags", "warning,action_failed".into()))
        );
        assert!(
            n.headers
                .iter()
                .any(|(k, v)| *k == "title" && v.contains("failed in alice:web"))
        );
    }
}
