//! The one way an event enters the log: encoded once as Avro single-object bytes, sent to its
//! subject with `Nats-Msg-Id` = its event id (so a re-publish inside the stream's dedup window is
//! dropped), and counted as stored only once JetStream acks it. Every writer — agent, API,
//! dispatcher, liveness tracker, alert evaluator, load generator — publishes through here.

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use nerve_schemas::{EncodeError, Event};

/// The JetStream header that makes a publish idempotent.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// A stored message's `Nats-Msg-Id` (its event id; "" without one).
pub fn msg_id(msg: &async_nats::jetstream::Message) -> &str {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(MSG_ID))
        .map_or("", |v| v.as_str())
}

/// When JetStream stored a message, in ms since the epoch.
pub fn published_ms(info: &async_nats::jetstream::message::Info<'_>) -> i64 {
    (info.published.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Why an event did not reach the log.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("NATS did not take the event: {0}")]
    Send(String),
    #[error("JetStream did not store the event: {0}")]
    Ack(String),
    /// The process was started without NATS (reads still work).
    #[error("no event log configured")]
    NoEventLog,
    /// The subject's last message is not the one the writer expected (another writer went
    /// first): re-read and retry.
    #[error("the subject moved on since it was read")]
    Conflict,
    /// The current [`crate::gate::Gate`] refused the change (e.g. its audit entry could not
    /// be written).
    #[error(transparent)]
    Refused(#[from] crate::gate::Refused),
}

/// Where a process records events: JetStream, or nothing in a process started without NATS,
/// where every publish is [`PublishError::NoEventLog`]. Cheap to clone.
#[derive(Clone)]
pub struct EventLog(Option<Context>);

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "EventLog(JetStream)"
        } else {
            "EventLog(none)"
        })
    }
}

impl EventLog {
    pub fn new(nats: Option<async_nats::Client>) -> Self {
        Self(nats.map(async_nats::jetstream::new))
    }

    /// The JetStream context events go to.
    pub fn jetstream(&self) -> Result<&Context, PublishError> {
        self.0.as_ref().ok_or(PublishError::NoEventLog)
    }

    /// Encodes `event`, publishes it on `subject` and waits until JetStream stored it.
    pub async fn publish<E: Event>(
        &self,
        subject: String,
        event: &E,
    ) -> Result<PublishAck, PublishError> {
        let js = self.jetstream()?;
        crate::gate::pass().await?;
        let ack = publish(js, subject, event).await?;
        crate::gate::landed(&ack.stream, ack.sequence);
        Ok(ack)
    }

    /// Publishes `event` on `subject` only if the subject's last message in its stream is
    /// still sequence `last` (0: the subject has none): a compare-and-set, so of several
    /// writers who read the same state exactly one wins; the others get
    /// [`PublishError::Conflict`].
    pub async fn publish_if_last<E: Event>(
        &self,
        subject: String,
        event: &E,
        last: u64,
    ) -> Result<PublishAck, PublishError> {
        let js = self.jetstream()?;
        crate::gate::pass().await?;
        let outgoing = Outgoing::event(subject, event)?;
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, outgoing.msg_id.as_str());
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            last.to_string().as_str(),
        );
        let ack = js
            .publish_with_headers(outgoing.subject, headers, outgoing.payload)
            .await
            .map_err(|e| PublishError::Send(e.to_string()))?;
        let ack = ack.await.map_err(|e| match e.kind() {
            async_nats::jetstream::context::PublishErrorKind::WrongLastSequence => {
                PublishError::Conflict
            }
            _ => PublishError::Ack(e.to_string()),
        })?;
        crate::gate::landed(&ack.stream, ack.sequence);
        Ok(ack)
    }
}

/// One encoded event ready to publish: its subject, message id and single-object bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
}

/// A sent event whose ack has not arrived yet; await [`Pending::stored`]. Sending many before
/// awaiting their acks is how a hot path keeps up (one awaited ack per event is ≈ 7k/s).
#[derive(Debug)]
pub struct Pending(PublishAckFuture);

impl Pending {
    /// Waits until JetStream has stored the event (or says it will not).
    pub async fn stored(self) -> Result<PublishAck, PublishError> {
        self.0.await.map_err(|e| PublishError::Ack(e.to_string()))
    }
}

impl Outgoing {
    /// Already encoded bytes (the agent's outbox keeps events this way).
    pub fn new(subject: String, msg_id: String, payload: impl Into<Bytes>) -> Self {
        Self {
            subject,
            msg_id,
            payload: payload.into(),
        }
    }

    /// `event` encoded, with its event id as message id.
    pub fn event<E: Event>(subject: String, event: &E) -> Result<Self, PublishError> {
        Ok(Self::new(
            subject,
            event.envelope().event_id.clone(),
            nerve_schemas::encode(event)?,
        ))
    }

    /// Sends it; the returned [`Pending`] resolves once JetStream stored it.
    pub async fn send(&self, js: &Context) -> Result<Pending, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, self.msg_id.as_str());
        js.publish_with_headers(self.subject.clone(), headers, self.payload.clone())
            .await
            .map(Pending)
            .map_err(|e| PublishError::Send(e.to_string()))
    }

    /// Sends it and waits for the ack.
    pub async fn publish(&self, js: &Context) -> Result<PublishAck, PublishError> {
        self.send(js).await?.stored().await
    }
}

/// Encodes `event`, publishes it on `subject` and waits until JetStream stored it.
pub async fn publish<E: Event>(
    js: &Context,
    subject: String,
    event: &E,
) -> Result<PublishAck, PublishError> {
    Outgoing::event(subject, event)?.publish(js).await
}
