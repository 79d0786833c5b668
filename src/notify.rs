//! E-mail to the client and the vendor: the confirmation when a booking's window opens
//! (SOP rule 7) and the notice when an approved booking is cancelled. A message is
//! composed once, kept as an `.eml` copy with the booking (`<data>/mail/B-17/…`), and
//! delivered from that copy by the configured transport: `.eml` files in an outbox
//! folder, or SMTP (STARTTLS or implicit TLS with rustls).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailTransport, SmtpTls};
use crate::policy::format_window;
use crate::store::{Booking, Client, Target, Vendor};

/// Everything a message about a booking says.
#[derive(Debug)]
pub struct About<'a> {
    pub booking: &'a Booking,
    pub target: &'a Target,
    pub client: &'a Client,
    pub vendor: &'a Vendor,
    pub tz: chrono_tz::Tz,
    pub now: DateTime<Utc>,
}

/// Which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The window has opened: access is enabled and supervised.
    Open,
    /// An approved booking was cancelled.
    Cancel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Cancel => "cancel",
        }
    }
}

/// A composed message, ready to keep and send.
#[derive(Debug)]
pub struct Composed {
    pub message_id: String,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
}

pub fn compose(kind: Kind, about: &About<'_>, from: &str) -> Result<Composed, String> {
    let b = about.booking;
    let window = format_window(b.start, b.end, about.tz);
    let supervisor = b.approved_by.as_deref().unwrap_or("(not yet assigned)");
    let (subject, opening) = match kind {
        Kind::Open => (
            format!("Access enabled: {} on {} ({}), {window}", b.vendor, b.target, b.label()),
            format!(
                "The booked window for {} has opened. {}'s access to {} is now enabled, as account {}, under supervision.",
                b.label(),
                b.vendor,
                b.target,
                b.account
            ),
        ),
        Kind::Cancel => (
            format!("Cancelled: {} on {} ({}), {window}", b.vendor, b.target, b.label()),
            format!(
                "Booking {} has been cancelled by {}: {}. Access will not be (or is no longer) enabled.",
                b.label(),
                b.cancelled_by.as_deref().unwrap_or("the provider"),
                b.cancel_reason.as_deref().unwrap_or("no reason given")
            ),
        ),
    };
    let mut body = format!(
        "{opening}\n\nBooking:     {}\nVendor:      {} <{}>\nTarget:      {} ({})\nClient:      {}\nAccount:     {}\nWindow:      {window}\nSupervising: {supervisor}\n",
        b.label(),
        b.vendor,
        about.vendor.email,
        b.target,
        about.target.address,
        about.client.name,
        b.account,
    );
    if let Some(reason) = &b.privileged {
        body.push_str(&format!("Privileged:  yes, because: {reason}\n"));
    }
    if let Some(reason) = &b.emergency {
        body.push_str(&format!("Emergency:   booked at short notice because: {reason}\n"));
    }
    body.push_str(&format!("\nThe agreed plan:\n\n{}\n", b.plan));

    let mut recipients = about.client.emails.clone();
    recipients.push(about.vendor.email.clone());
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
    let message_id = format!("<{}.{}.{}@{domain}>", b.label(), kind.as_str(), about.now.timestamp_micros());
    let mailbox = |addr: &str| addr.parse::<Mailbox>().map_err(|e| format!("address {addr:?}: {e}"));
    let mut builder = Message::builder()
        .from(mailbox(from)?)
        .subject(subject)
        .date(about.now.into())
        .message_id(Some(message_id.clone()));
    for to in &recipients {
        builder = builder.to(mailbox(to)?);
    }
    let ics = crate::calendar::booking_ics(b, about.now);
    let calendar_type =
        ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH").map_err(|e| e.to_string())?;
    let message = builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(body))
                .singlepart(Attachment::new(format!("booking-{}.ics", b.label())).body(ics, calendar_type)),
        )
        .map_err(|e| e.to_string())?;
    Ok(Composed { message_id, recipients, bytes: message.formatted() })
}

/// Where the copy of a booking's message is kept.
pub fn copy_path(data_dir: &Path, booking: &Booking, kind: Kind) -> PathBuf {
    data_dir.join("mail").join(booking.label()).join(format!("{}.eml", kind.as_str()))
}

/// Writes a file so that readers never see it half-written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Checks that `pem` holds at least one certificate usable as a trust anchor for the relay.
pub fn check_ca(pem: &[u8]) -> Result<(), String> {
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err("no PEM certificate in it".into());
    }
    Certificate::from_pem(pem).map(|_| ()).map_err(|e| e.to_string())
}

/// Sends the kept copy at `copy` to `recipients` with the configured transport.
pub async fn deliver(config: &MailConfig, copy: &Path, recipients: &[String]) -> Result<(), String> {
    let bytes = std::fs::read(copy).map_err(|e| format!("cannot read {}: {e}", copy.display()))?;
    match &config.transport {
        MailTransport::Outbox(dir) => {
            let name = copy
                .parent()
                .and_then(Path::file_name)
                .map(|b| {
                    format!(
                        "{}-{}",
                        b.to_string_lossy(),
                        copy.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "message.eml".into());
            write_atomically(&dir.join(name), &bytes)
                .map_err(|e| format!("cannot write to outbox {}: {e}", dir.display()))
        }
        MailTransport::Smtp(smtp) => {
            let from: Address = config.from.parse().map_err(|e| format!("from address: {e}"))?;
            let to = recipients
                .iter()
                .map(|r| r.parse::<Address>().map_err(|e| format!("address {r:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let envelope = lettre::address::Envelope::new(Some(from), to).map_err(|e| e.to_string())?;
            let builder = match smtp.tls {
                SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                SmtpTls::StartTls => {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(|e| e.to_string())?
                }
                SmtpTls::Implicit => {
                    AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?
                }
            };
            let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(30)));
            if let Some(pem) = &smtp.ca {
                let ca = Certificate::from_pem(pem).map_err(|e| format!("mail.smtp_ca: {e}"))?;
                let params = TlsParameters::builder(smtp.host.clone())
                    .add_root_certificate(ca)
                    .build_rustls()
                    .map_err(|e| format!("smtp {}: {e}", smtp.host))?;
                builder = builder.tls(match smtp.tls {
                    SmtpTls::Implicit => Tls::Wrapper(params),
                    _ => Tls::Required(params),
                });
            }
            if let Some((user, password)) = &smtp.credentials {
                builder = builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
            }
            builder
                .build()
                .send_raw(&envelope, &bytes)
                .await
                .map(|_| ())
                .map_err(|e| format!("smtp {}:{}: {e}", smtp.host, smtp.port))
        }
    }
}
