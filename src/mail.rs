//! Outgoing email behind a small trait: SES on AWS, an outbox of `.eml`
//! files locally. Messages are rendered by their owners (see
//! `credentials::email`); this module only delivers them.

use std::path::PathBuf;

use async_trait::async_trait;
use aws_sdk_ses::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use thiserror::Error;
use tokio::sync::OnceCell;

/// One message with an HTML and a plain-text alternative.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Error)]
pub enum MailError {
    /// The mail service refused this message (e.g. an unverified sender).
    #[error("the email was refused: {0}")]
    Rejected(String),
    /// The mail service could not be reached or failed.
    #[error("the email service is unavailable: {0}")]
    Unavailable(String),
    #[error("email is not configured: {0}")]
    NotConfigured(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends the message; returns where it went (message id or file).
    async fn send(&self, email: &Email) -> Result<String, MailError>;
}

/// Writes each message as an RFC 5322 file into a directory.
pub struct Outbox {
    dir: PathBuf,
    from: String,
}

impl Outbox {
    pub fn new(dir: PathBuf, from: String) -> Outbox {
        Outbox { dir, from }
    }
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        use lettre::message::{Mailbox, MultiPart};
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| MailError::Rejected(format!("address {a:?}: {e}")))
        };
        let message = lettre::Message::builder()
            .from(parse(&self.from)?)
            .to(parse(&email.to)?)
            .subject(&email.subject)
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| MailError::Rejected(e.to_string()))?;
        let bytes = message.formatted();
        let name = format!(
            "{}-{}.eml",
            time::OffsetDateTime::now_utc().unix_timestamp(),
            uuid::Uuid::now_v7().simple()
        );
        let dir = self.dir.clone();
        let path = dir.join(name);
        let written = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            write_private(&written, &bytes)
        })
        .await
        .map_err(|e| MailError::Unavailable(e.to_string()))?
        .map_err(|e| MailError::Unavailable(format!("writing {}: {e}", path.display())))?;
        let shown = path.display().to_string();
        tracing::info!(path = %shown, "email written to the outbox");
        Ok(shown)
    }
}

/// A message holds a live reveal link: readable by its owner only.
#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Amazon SES (`SendEmail`), from one configured sender. The client is
/// built on first use, so a cold start that sends nothing pays nothing.
pub struct Ses {
    from: String,
    client: OnceCell<aws_sdk_ses::Client>,
}

impl Ses {
    pub fn new(from: String) -> Ses {
        Ses {
            from,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_ses::Client {
        self.client
            .get_or_init(|| async {
                let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                aws_sdk_ses::Client::new(&conf)
            })
            .await
    }
}

fn content(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Rejected(e.to_string()))
}

#[async_trait]
impl Mailer for Ses {
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .build();
        let sent = self
            .client()
            .await
            .send_email()
            .source(&self.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .message(message)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let id = out.message_id().to_owned();
                tracing::info!(message_id = %id, "email sent through SES");
                Ok(id)
            }
            Err(e) => {
                let service = e.as_service_error();
                let rejected = service.is_some_and(|s| {
                    s.is_message_rejected()
                        || s.is_mail_from_domain_not_verified_exception()
                        || s.is_configuration_set_does_not_exist_exception()
                }) || matches!(
                    service.and_then(ProvideErrorMetadata::code),
                    Some("MessageRejected" | "InvalidParameterValue")
                );
                // The service's code and message; the raw response only
                // when there is no modelled error (a transport fault).
                let detail = match service {
                    Some(s) => format!(
                        "{}: {}",
                        s.code().unwrap_or("error"),
                        s.message().unwrap_or("no message")
                    ),
                    None => DisplayErrorContext(&e).to_string(),
                };
                tracing::warn!(error = %detail, "SES did not send the email");
                Err(if rejected {
                    MailError::Rejected(format!("SES refused the message: {detail}"))
                } else {
                    MailError::Unavailable(format!("SES: {detail}"))
                })
            }
        }
    }
}

/// No sender configured: every send fails, so credentials stay unchanged.
pub struct Unconfigured(pub &'static str);

#[async_trait]
impl Mailer for Unconfigured {
    async fn send(&self, _: &Email) -> Result<String, MailError> {
        Err(MailError::NotConfigured(self.0.into()))
    }
}
