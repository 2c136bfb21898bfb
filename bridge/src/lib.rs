//! `nerve bridge kafka`: mirrors chosen JetStream streams into Kafka topics (`rdkafka`), one
//! topic per stream (`<topic_prefix><stream>`, e.g. `nerve.telemetry`). Each record's value is
//! the event's Avro single-object bytes unchanged, its key the node id from the event's
//! envelope, and its headers the event type, the writer schema's fingerprint, the stream
//! sequence and the `Nats-Msg-Id`. The producer is idempotent (`acks=all`); a JetStream message
//! is acked only after Kafka's delivery report for it, so a bridge killed at any point sends the
//! unacked messages again when it (or another) resumes from the durable consumer: at least once,
//! never lost; a consumer drops repeats by `Nats-Msg-Id`.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use nerve_platform::config::KafkaBridgeConfig;
use nerve_platform::metrics::{Counter, Registry};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

/// Header names on every record.
pub const HEADER_EVENT_TYPE: &str = "nerve-event-type";
pub const HEADER_FINGERPRINT: &str = "nerve-schema-fingerprint";
pub const HEADER_STREAM_SEQ: &str = "nerve-stream-seq";
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_SUBJECT: &str = "nerve-subject";

/// How long a message may stay unacked before JetStream sends it again: what a killed bridge's
/// successor waits for the messages it had in hand. While Kafka is slow to report, the bridge
/// keeps its messages by extending the deadline every half of it.
const ACK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bridge.kafka: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Ingest(#[from] nerve_ingest::IngestError),
    #[error("jetstream: {0}")]
    JetStream(String),
}

/// The topic a stream is mirrored to: the prefix and the stream's name without `NERVE_`,
/// lowercased (`NERVE_TELEMETRY` → `nerve.telemetry`).
pub fn topic_of(prefix: &str, stream: &str) -> String {
    format!(
        "{prefix}{}",
        stream
            .strip_prefix("NERVE_")
            .unwrap_or(stream)
            .to_lowercase()
    )
}

/// The durable consumer the bridge reads `stream` with.
pub fn durable_of(stream: &str) -> String {
    format!("nerve_bridge_kafka_{}", stream.to_lowercase())
}

/// What one record carries besides the value: key and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// The event's node id (its envelope's); the subject's last token for bytes that do not
    /// decode.
    pub key: String,
    /// `Name/version` of the writer schema, e.g. `HeartbeatRecorded/2`; `unknown` when the
    /// bytes name no released schema.
    pub event_type: String,
    /// The writer schema's Rabin fingerprint, 16 hex digits.
    pub fingerprint: String,
}

/// Key and headers of an event's bytes published on `subject`.
pub fn meta_of(subject: &str, payload: &[u8]) -> RecordMeta {
    let fingerprint = payload
        .get(2..nerve_schemas::codec::HEADER_LEN)
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_default();
    let event_type = nerve_schemas::written_as(payload)
        .map(|(name, version)| format!("{name}/{version}"))
        .unwrap_or_else(|_| "unknown".into());
    let key = nerve_schemas::envelope_of(payload)
        .map(|e| e.node_id)
        .unwrap_or_else(|_| subject.rsplit('.').next().unwrap_or(subject).to_owned());
    RecordMeta {
        key,
        event_type,
        fingerprint,
    }
}

fn producer(config: &KafkaBridgeConfig) -> Result<FutureProducer, BridgeError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", config.linger_ms.to_string())
        .set("message.timeout.ms", "0"); // retry until delivered; JetStream keeps the message
    for (k, v) in &config.properties {
        client.set(k, v);
    }
    Ok(client.create()?)
}

/// Creates the topics that do not exist yet (`topic_partitions`, replication
/// `topic_replication`); an existing topic is left as it is.
async fn ensure_topics(config: &KafkaBridgeConfig, topics: &[String]) -> Result<(), BridgeError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (k, v) in &config.properties {
        client.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                config.topic_partitions.max(1),
                TopicReplication::Fixed(config.topic_replication.max(1)),
            )
        })
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "kafka topic created"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "kafka topic exists")
            }
            Err((topic, code)) => {
                return Err(BridgeError::Config(format!(
                    "creating topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

#[derive(Clone)]
struct Metrics {
    mirrored: Counter,
    failed: Counter,
}

/// Mirrors every stream in `config.streams` until `cancel`; what is in flight is either
/// reported delivered and acked, or left unacked (sent again after a restart).
pub async fn run(
    client: async_nats::Client,
    config: &KafkaBridgeConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), BridgeError> {
    if config.brokers.is_empty() {
        return Err(BridgeError::Config("brokers is empty".into()));
    }
    if config.streams.is_empty() {
        return Err(BridgeError::Config("streams is empty".into()));
    }
    let js = jetstream::new(client);
    let topics: Vec<String> = config
        .streams
        .iter()
        .map(|s| topic_of(&config.topic_prefix, s))
        .collect();
    ensure_topics(config, &topics).await?;
    let producer = producer(config)?;
    let mut tasks = Vec::new();
    for (stream, topic) in config.streams.iter().zip(topics) {
        let consumer =
            nerve_ingest::ensure_projector_consumer(&js, stream, &durable_of(stream), ACK_WAIT)
                .await?;
        let labels = [("stream", stream.as_str())];
        let m = Metrics {
            mirrored: metrics.counter(
                "nerve_bridge_events_total",
                "Events delivered to Kafka (delivery report received) and acked on JetStream.",
                &labels,
            ),
            failed: metrics.counter(
                "nerve_bridge_delivery_errors_total",
                "Events Kafka did not take (left unacked; JetStream delivers them again).",
                &labels,
            ),
        };
        tracing::info!(%stream, %topic, "mirroring");
        tasks.push(tokio::spawn(mirror(
            consumer,
            producer.clone(),
            topic,
            config.batch_max_events.max(1),
            m,
            cancel.clone(),
        )));
    }
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(BridgeError::JetStream(format!("mirror task: {e}")));
            }
        }
    }
    // Whatever is still queued in librdkafka was not acked on JetStream: flushing only saves
    // the resend.
    let _ = producer.flush(Duration::from_secs(5));
    first_error.map_or(Ok(()), Err)
}

/// One stream: fetch a batch, produce every message, ack each one Kafka reported delivered.
async fn mirror(
    consumer: jetstream::consumer::PullConsumer,
    producer: FutureProducer,
    topic: String,
    batch_max: usize,
    m: Metrics,
    cancel: CancellationToken,
) -> Result<(), BridgeError> {
    while !cancel.is_cancelled() {
        let batch = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            b = consumer.fetch().max_messages(batch_max).expires(Duration::from_secs(1)).messages() => b,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                Err(e) => tracing::warn!(%topic, error = %e, "fetch: a message failed"),
            }
        }
        if messages.is_empty() {
            continue;
        }
        let deliveries = messages.iter().map(|message| {
            let meta = meta_of(&message.subject, &message.payload);
            let seq = message
                .info()
                .map(|i| i.stream_sequence.to_string())
                .unwrap_or_default();
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: HEADER_EVENT_TYPE,
                    value: Some(meta.event_type.as_str()),
                })
                .insert(Header {
                    key: HEADER_FINGERPRINT,
                    value: Some(meta.fingerprint.as_str()),
                })
                .insert(Header {
                    key: HEADER_STREAM_SEQ,
                    value: Some(seq.as_str()),
                })
                .insert(Header {
                    key: HEADER_MSG_ID,
                    value: Some(msg_id.as_str()),
                })
                .insert(Header {
                    key: HEADER_SUBJECT,
                    value: Some(message.subject.as_str()),
                });
            let record = FutureRecord::to(&topic)
                .key(meta.key.as_str())
                .payload(message.payload.as_ref())
                .headers(headers);
            // The record is queued here (`send_result` copies it); the future is its report.
            let queued = producer.send_result(record).map_err(|(e, _)| e);
            async move {
                match queued {
                    Ok(report) => match report.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("the producer dropped the delivery report".to_owned()),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
        });
        let reports = futures::future::join_all(deliveries);
        tokio::pin!(reports);
        let mut keep = tokio::time::interval(ACK_WAIT / 2);
        keep.tick().await;
        let reports = loop {
            tokio::select! {
                reports = &mut reports => break reports,
                _ = keep.tick() => {
                    for message in &messages {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        };
        for (message, report) in messages.iter().zip(reports) {
            match report {
                Ok(()) => {
                    if let Err(e) = message.ack().await {
                        tracing::warn!(%topic, error = %e, "ack failed; the event will be sent again");
                    }
                    m.mirrored.inc();
                }
                Err(e) => {
                    m.failed.inc();
                    tracing::warn!(%topic, error = %e, "kafka did not take an event; it will be sent again");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_durables_are_named_after_the_stream() {
        assert_eq!(topic_of("nerve.", "NERVE_TELEMETRY"), "nerve.telemetry");
        assert_eq!(topic_of("", "NERVE_EVENTS"), "events");
        assert_eq!(
            durable_of("NERVE_EVENTS"),
            "nerve_bridge_kafka_nerve_events"
        );
    }

    #[test]
    fn a_records_key_and_headers_come_from_the_event() {
        let xid = nerve_schemas::GpuXidOccurred::example("node-7", 1);
        let bytes = nerve_schemas::encode(&xid).expect("encode");
        let meta = meta_of("nerve.v1.events.gpu_xid.node-7", &bytes);
        assert_eq!(meta.key, "node-7");
        assert_eq!(meta.event_type, "GpuXidOccurred/1");
        assert_eq!(meta.fingerprint.len(), 16);
        // Bytes that name no schema: keyed by the subject, typed unknown.
        let junk = meta_of("nerve.v1.events.gpu_xid.n9", b"junk");
        assert_eq!(
            (junk.key.as_str(), junk.event_type.as_str()),
            ("n9", "unknown")
        );
    }
}
