//! Email delivery: `mailto:a@x,b@y` recipients through the SMTP relay of `[alerts.smtp]`, with
//! STARTTLS and AUTH as configured. SMTP 4xx and connection errors are worth retrying, 5xx not.

use lettre::AsyncTransport;
use nerve_platform::config::SmtpConfig;

use super::{ATTEMPT_TIMEOUT, Outcome};

/// The recipients of an email channel's `mailto:a@x,b@y` URL.
pub fn recipients(url: &str) -> Result<Vec<lettre::message::Mailbox>, String> {
    let list = url
        .strip_prefix("mailto:")
        .ok_or_else(|| format!("{url:?} is not mailto:address[,address...]"))?;
    let out: Vec<lettre::message::Mailbox> = list
        .split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an email address"))
        })
        .collect::<Result<_, _>>()?;
    if out.is_empty() || out.len() > 20 {
        return Err("1 to 20 recipients".into());
    }
    Ok(out)
}

fn message(
    smtp: &SmtpConfig,
    url: &str,
    subject: &str,
    text: &str,
) -> Result<lettre::Message, String> {
    let mut b = lettre::Message::builder()
        .from(
            smtp.from
                .parse()
                .map_err(|e| format!("alerts.smtp.from: {e}"))?,
        )
        .subject(subject);
    for to in recipients(url)? {
        b = b.to(to);
    }
    b.body(text.to_owned()).map_err(|e| e.to_string())
}

/// One email to the recipients of `url` through the relay.
pub(super) async fn send(smtp: &SmtpConfig, url: &str, subject: &str, text: &str) -> Outcome {
    if smtp.host.is_empty() {
        return Outcome::failed("no SMTP relay configured (alerts.smtp.host)".into(), false);
    }
    let message = match message(smtp, url, subject, text) {
        Ok(m) => m,
        Err(e) => return Outcome::failed(e, false),
    };
    type Smtp = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
    let builder = if smtp.starttls {
        match Smtp::starttls_relay(&smtp.host) {
            Ok(b) => b,
            Err(e) => return Outcome::failed(format!("SMTP TLS: {e}"), false),
        }
    } else {
        Smtp::builder_dangerous(&smtp.host)
    };
    let mut builder = builder.port(smtp.port).timeout(Some(ATTEMPT_TIMEOUT));
    if !smtp.username.is_empty() {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            smtp.username.clone(),
            smtp.password.clone(),
        ));
    }
    match builder.build().send(message).await {
        Ok(r) => Outcome::ok(u16::from(r.code())),
        Err(e) => Outcome {
            ok: false,
            status: e.status().map(u16::from),
            error: e.to_string(),
            retry: !e.is_permanent(),
        },
    }
}
