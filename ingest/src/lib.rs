//! NATS plumbing as code: connecting, the JetStream streams (created or updated idempotently at
//! start), the durable consumers the projectors use, and [`publish`], the one publish path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use nerve_platform::config::{NatsConfig, StreamsConfig};
use nerve_schemas::subjects;

#[cfg(feature = "archive")]
pub mod archive;
#[cfg(feature = "authority")]
pub mod authority;
pub mod gate;
pub mod keys;
#[cfg(feature = "lease")]
pub mod lease;
pub mod node_key;
pub mod offer;
pub mod publish;

pub use publish::{EventLog, Outgoing, Pending, PublishError, publish};

/// Heartbeats of every node.
pub const TELEMETRY_STREAM: &str = "NERVE_TELEMETRY";
/// Inventory reports of every node.
pub const INVENTORY_STREAM: &str = "NERVE_INVENTORY";
/// Node events: GPU XIDs and liveness changes.
pub const EVENTS_STREAM: &str = "NERVE_EVENTS";
/// Tasks: requests, cancellations, and every node's progress, output and result.
pub const TASKS_STREAM: &str = "NERVE_TASKS";
/// Control: clusters, membership, labels — every change, who and when.
pub const CONTROL_STREAM: &str = "NERVE_CONTROL";
/// Alerts: every firing and resolution, on one subject per rule and node.
pub const ALERTS_STREAM: &str = "NERVE_ALERTS";
/// Operator tokens: issued, rotated, revoked, seen in use (hashes only, never a secret).
pub const AUTH_STREAM: &str = "NERVE_AUTH";
/// The audit trail: every API change and every refused call, chained per API instance.
pub const AUDIT_STREAM: &str = "NERVE_AUDIT";

/// Why NATS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot create or update stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("cannot create or update consumer {consumer} on {stream}: {message}")]
    Consumer {
        stream: String,
        consumer: String,
        message: String,
    },
}

/// Who a connection is: a control-plane role or tool (signed in with `nats.credentials_file`,
/// when set), or a node (with its own key and JWT once enrolled). Each has its own inbox
/// prefix, the one its credentials let it hear.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Role(&'a str),
    Node {
        id: &'a str,
        key: Option<&'a node_key::NodeKey>,
    },
}

/// Connects to NATS. With `wait_for_server`, a server that is not up yet is retried forever in the
/// background (agents start before the network); otherwise the first failure is returned.
pub async fn connect(
    config: &NatsConfig,
    who: Who<'_>,
    wait_for_server: bool,
) -> Result<async_nats::Client, IngestError> {
    let err = |message: String| IngestError::Connect {
        url: config.url.clone(),
        message,
    };
    let (mut options, name, inbox) = match who {
        Who::Node { id, key } => (
            key.map_or_else(async_nats::ConnectOptions::new, |k| k.connect_options()),
            format!("nerve-agent {id}"),
            inbox::node(id),
        ),
        Who::Role(role) => (
            async_nats::ConnectOptions::new(),
            format!("nerve-{role}"),
            inbox::role(role),
        ),
    };
    let spread = Duration::from_millis(match who {
        Who::Node { .. } => config.reconnect_spread_ms,
        Who::Role(_) => config.reconnect_spread_ms.min(250),
    });
    let connected_once = Arc::new(AtomicBool::new(false));
    options = options
        .name(name)
        .custom_inbox_prefix(inbox)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback({
            let connected_once = connected_once.clone();
            move |event| {
                if let async_nats::Event::Connected = event {
                    connected_once.store(true, Ordering::Relaxed);
                }
                async {}
            }
        })
        .reconnect_delay_callback(move |attempt| {
            reconnect_delay(attempt, spread, connected_once.load(Ordering::Relaxed))
        });
    if wait_for_server {
        options = options.retry_on_initial_connect();
    }
    if !config.tls_ca_file.as_os_str().is_empty() {
        options = options
            .require_tls(true)
            .add_root_certificates(config.tls_ca_file.clone());
    }
    if let (Who::Role(_), Some(creds)) = (who, &config.credentials_file) {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| err(format!("credentials {}: {e}", creds.display())))?;
    }
    // Every server of a cluster may be named: the client fails over between them (and learns
    // the others from the one it reaches).
    let servers: Vec<&str> = config
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    options
        .connect(servers)
        .await
        .map_err(|e| err(e.to_string()))
}

/// The wait before connection try `attempt` (1 for the first): nothing for a client's very first
/// try; otherwise a random point of a window that starts at `spread` and doubles with each
/// failed try, up to 30 s ("full jitter": clients that lost the same server at the same moment
/// spread out instead of retrying in lockstep).
pub fn reconnect_delay(attempt: usize, spread: Duration, connected_once: bool) -> Duration {
    const MAX_WINDOW: Duration = Duration::from_secs(30);
    if attempt <= 1 && !connected_once {
        return Duration::ZERO;
    }
    // A floor, so a spread of 0 never retries a server that is down in a tight loop.
    let base = spread.max(Duration::from_millis(100));
    let doublings = attempt.saturating_sub(1).min(16) as u32;
    let window = base.saturating_mul(1 << doublings).min(MAX_WINDOW);
    window.mul_f64(fastrand::f64())
}

/// Inbox prefixes, as the authority grants them.
pub mod inbox {
    /// A node's: only that node may subscribe under it.
    pub fn node(node_id: &str) -> String {
        format!("_INBOX.node.{node_id}")
    }

    /// A control-plane role's.
    pub fn role(role: &str) -> String {
        format!("_INBOX.role.{role}")
    }
}

/// The stream definitions, from config.
pub fn stream_configs(config: &StreamsConfig) -> Vec<stream::Config> {
    let common = stream::Config {
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(config.duplicate_window_secs),
        num_replicas: config.replicas,
        ..Default::default()
    };
    vec![
        stream::Config {
            name: TELEMETRY_STREAM.into(),
            description: Some("Node heartbeats (HeartbeatRecorded)".into()),
            subjects: vec![subjects::TELEMETRY_ALL.into()],
            max_age: Duration::from_secs(config.telemetry_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: INVENTORY_STREAM.into(),
            description: Some("Node inventory reports (InventoryReported)".into()),
            subjects: vec![subjects::INVENTORY_ALL.into()],
            max_age: Duration::from_secs(config.inventory_max_age_secs),
            max_messages_per_subject: if config.inventory_max_per_node > 0 {
                config.inventory_max_per_node
            } else {
                -1
            },
            ..common.clone()
        },
        stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some(
                "Node events (GpuXidOccurred, NodeBecameSuspect, NodeWentOffline, NodeCameBack)"
                    .into(),
            ),
            subjects: vec![subjects::EVENTS_ALL.into()],
            max_age: Duration::from_secs(config.events_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: TASKS_STREAM.into(),
            description: Some(
                "Tasks: requests, dispatch, per-node progress, output, results".into(),
            ),
            subjects: vec![subjects::TASKS_ALL.into()],
            max_age: Duration::from_secs(config.tasks_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: CONTROL_STREAM.into(),
            description: Some(
                "Control: clusters, membership, labels, channels, alert rules, silences".into(),
            ),
            subjects: vec![subjects::CONTROL_ALL.into()],
            max_age: Duration::from_secs(config.control_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: ALERTS_STREAM.into(),
            description: Some("Alerts: AlertFired, AlertResolved per rule and node".into()),
            subjects: vec![subjects::ALERTS_ALL.into()],
            max_age: Duration::from_secs(config.alerts_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: AUTH_STREAM.into(),
            description: Some("Operator tokens: TokenIssued, TokenRevoked, TokenUsed".into()),
            subjects: vec![subjects::AUTH_ALL.into()],
            max_age: Duration::from_secs(config.auth_max_age_secs),
            ..common.clone()
        },
        stream::Config {
            name: AUDIT_STREAM.into(),
            description: Some("Audit trail: AuditRecorded per API change or refused call".into()),
            subjects: vec![subjects::AUDIT_ALL.into()],
            max_age: Duration::from_secs(config.audit_max_age_secs),
            ..common
        },
    ]
}

/// Creates the streams, or updates them to match the config. Safe to run at every start. A
/// JetStream that is not ready yet (a cluster electing its leader, a server still starting)
/// is asked again for up to a minute; any other refusal is returned at once.
pub async fn ensure_streams(
    js: &jetstream::Context,
    config: &StreamsConfig,
) -> Result<(), IngestError> {
    for stream in stream_configs(config) {
        let name = stream.name.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(250);
        loop {
            match js.create_or_update_stream(stream.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    let message = e.to_string();
                    let lower = message.to_lowercase();
                    let transient = ["timed out", "unavailable", "no responders", "leader"]
                        .iter()
                        .any(|w| lower.contains(w));
                    if !transient || tokio::time::Instant::now() >= deadline {
                        return Err(IngestError::Stream {
                            stream: name.clone(),
                            message,
                        });
                    }
                    tracing::warn!(stream = %name, error = %message, "JetStream not ready; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::debug!(stream = %name, "stream ready");
    }
    Ok(())
}

/// The durable pull consumer a projector reads `stream` with; created or updated at start, so
/// N projector processes with the same name share the work.
pub async fn ensure_projector_consumer(
    js: &jetstream::Context,
    stream: &str,
    durable_name: &str,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, IngestError> {
    let err = |message: String| IngestError::Consumer {
        stream: stream.into(),
        consumer: durable_name.into(),
        message,
    };
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| err(e.to_string()))?;
    handle
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable_name.into()),
            description: Some(format!("projector {durable_name}")),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))
}

/// A stream read in order from `after` + 1 (0: from the start), only `filter`'s subjects
/// (empty: all), then live: the stream's last sequence when reading began, and the messages.
/// An ordered consumer, recreated by the client after a gap, so nothing is skipped.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    after: u64,
) -> Result<(u64, consumer::pull::Ordered), String> {
    let mut handle = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let end = handle
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let consumer = handle
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: if after == 0 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                }
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    Ok((end, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_spread_over_a_window_that_doubles_up_to_30_s() {
        let spread = Duration::from_secs(5);
        assert_eq!(
            reconnect_delay(1, spread, false),
            Duration::ZERO,
            "first connect"
        );
        let firsts: Vec<Duration> = (0..2_000)
            .map(|_| reconnect_delay(1, spread, true))
            .collect();
        let (min, max) = (
            firsts.iter().min().copied().unwrap_or_default(),
            firsts.iter().max().copied().unwrap_or_default(),
        );
        assert!(max <= spread, "{max:?}");
        assert!(
            min < spread / 20 && max > spread * 19 / 20,
            "{min:?}..{max:?}"
        );
        // Each quarter of the window gets about a quarter of the clients.
        for q in 0..4u32 {
            let n = firsts
                .iter()
                .filter(|d| **d >= spread * q / 4 && **d < spread * (q + 1) / 4)
                .count();
            assert!((350..650).contains(&n), "quarter {q}: {n}");
        }
        for attempt in 2..100 {
            let d = reconnect_delay(attempt, spread, true);
            assert!(d <= Duration::from_secs(30), "attempt {attempt}: {d:?}");
        }
        assert!(
            (0..200).any(|_| reconnect_delay(3, spread, true) > spread * 2),
            "the window doubles"
        );
        // No spread still waits: never a tight loop against a server that is down.
        let floor = reconnect_delay(5, Duration::ZERO, true);
        assert!(floor <= Duration::from_millis(1_600));
    }
}
