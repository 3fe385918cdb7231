//! `kind = "email"`: one message per notice over SMTP, STARTTLS required unless
//! `starttls = false` (a relay on localhost). lettre on our rustls/aws-lc-rs stack.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Envelope;
use super::webhook::read_secret;
use crate::config::notify;

/// An email sink with its password loaded.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// The message for `e`: the title as subject, the line and the notice as JSON as body.
pub fn message(from: &Mailbox, to: &[Mailbox], e: &Envelope) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(e.title())
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        b = b.to(t.clone());
    }
    let json = serde_json::to_string_pretty(&e.json()).unwrap_or_default();
    b.body(format!("{}\n\n{json}\n", e.message()))
        .map_err(|err| format!("cannot build the message: {err}"))
}

impl Email {
    /// Read the password file and set up the transport (no connection yet).
    pub fn open(c: &notify::Email, timeout: Duration) -> Result<Self, String> {
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|_| format!("from: {:?} is not an email address", c.from))?;
        let to =
            c.to.iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|_| format!("to: {t:?} is not an email address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
        let mut b = match (&c.ca, c.starttls) {
            // A private CA: STARTTLS required, verified against its certificates only.
            (Some(ca), true) => {
                let mut params = TlsParameters::builder(c.smtp_host.clone())
                    .certificate_store(CertificateStore::None);
                for der in crate::cert::read_ca_file(ca).map_err(|e| format!("ca: {e}"))? {
                    let cert = Certificate::from_der(der.to_vec())
                        .map_err(|e| format!("ca: {}: {e}", ca.display()))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| format!("ca: {}: {e}", ca.display()))?;
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host)
                    .tls(Tls::Required(params))
            }
            (None, true) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.smtp_host)
                .map_err(|e| format!("smtp_host: {e}"))?,
            // Refused by the config check (a CA without TLS); in the clear otherwise.
            (_, false) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host),
        };
        b = b.port(c.smtp_port).timeout(Some(timeout));
        if let (Some(user), Some(p)) = (&c.username, &c.password_file) {
            let password = read_secret("password_file", p)?;
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            transport: b.build(),
            from,
            to,
        })
    }

    /// Send one message.
    pub async fn send(&self, e: &Envelope) -> Result<(), String> {
        let m = message(&self.from, &self.to, e)?;
        self.transport
            .send(m)
            .await
            .map(|_| ())
            .map_err(|err| format!("smtp: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notice;

    #[test]
    fn the_message_has_the_title_as_subject_and_the_notice_in_the_body() {
        let e = Envelope::now(Notice::Unreachable {
            target: "proxmox:pve1".into(),
            reason: "circuit breaker open".into(),
        });
        let from: Mailbox = "Autoscaler <autoscale@example.org>".parse().unwrap();
        let to: Vec<Mailbox> = vec![
            "ops@example.org".parse().unwrap(),
            "b@example.org".parse().unwrap(),
        ];
        let m = message(&from, &to, &e).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(
            raw.contains("Subject: albatross-autoscale: proxmox:pve1 unreachable"),
            "{raw}"
        );
        assert!(raw.contains("To: ops@example.org, b@example.org"), "{raw}");
        assert!(
            raw.contains("From: Autoscaler <autoscale@example.org>"),
            "{raw}"
        );
        assert!(
            raw.contains("proxmox:pve1 unreachable: circuit breaker open"),
            "{raw}"
        );
        assert!(raw.contains("\"event\": \"unreachable\""), "{raw}");
        assert_eq!(m.envelope().to().len(), 2);
    }
}
