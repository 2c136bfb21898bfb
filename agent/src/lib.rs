//! The node agent: collects this machine's inventory (on change) and health samples (every
//! heartbeat interval) and publishes them to JetStream as Avro events.
//!
//! Layout mirrors what it does: [`collectors`] (fingerprint = slow inventory, host = fast stats,
//! gpu = NVML), [`publisher`] (ordered, acked, deduplicated publishing) over [`buffer`] (the
//! bounded on-disk outbox that survives NATS outages and restarts), and
//! [`node_id`] (the stable identity kept in the state dir).

pub mod buffer;
pub mod collectors;
pub mod node_id;
pub mod publisher;

use std::time::Duration;

use nerve_platform::config::{AgentConfig, NatsConfig};
use nerve_platform::metrics::Registry;
use nerve_schemas::{Envelope, HeartbeatRecorded, InventoryReported, subjects};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use collectors::Collectors;
use publisher::{Outgoing, Publisher};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    NodeId(#[from] node_id::NodeIdError),
    #[error(transparent)]
    Nats(#[from] nerve_ingest::IngestError),
    #[error(transparent)]
    Outbox(#[from] buffer::BufferError),
    #[error("event encoding failed: {0}")]
    Encode(#[from] nerve_schemas::EncodeError),
    #[error("collector thread failed: {0}")]
    Collector(String),
}

/// Runs the agent until `cancel`: heartbeats every interval, inventory at start and on change.
pub async fn run(
    nats: &NatsConfig,
    config: &AgentConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let node_id = node_id::load_or_create(&config.state_dir)?;
    let span = tracing::info_span!("agent", node_id = %node_id);
    async move {
        tracing::info!(nats = %nats.url, "agent starting");
        let client = nerve_ingest::connect(nats, &format!("nerve-agent {node_id}"), true).await?;
        let js = async_nats::jetstream::new(client.clone());
        let (tx, rx) = mpsc::channel::<Outgoing>(64);
        let state_dir = config.state_dir.clone();
        let bounds = buffer::Bounds {
            max_events: config.buffer_max_events,
            max_bytes: config.buffer_max_bytes,
            max_age_ms: (config.buffer_max_age_secs as i64).saturating_mul(1000),
        };
        let outbox = tokio::task::spawn_blocking(move || buffer::Outbox::open(&state_dir, bounds))
            .await
            .map_err(|e| AgentError::Collector(e.to_string()))??;
        let publisher = Publisher::new(
            js,
            outbox,
            Duration::from_secs(config.publish_timeout_secs.max(1)),
            metrics,
        );
        let publish_cancel = cancel.child_token();
        let publishing = tokio::spawn(publisher.run(rx, publish_cancel.clone()));
        let collected = collect_loop(&node_id, config, tx, cancel.clone()).await;
        // Collection stopped: let the publisher flush what it holds, then stop it.
        publish_cancel.cancel();
        let _ = publishing.await;
        // Bounded: with NATS unreachable a flush would wait for the reconnect forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        tracing::info!("agent stopped");
        collected
    }
    .instrument(span)
    .await
}

async fn collect_loop(
    node_id: &str,
    config: &AgentConfig,
    tx: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let interval = Duration::from_secs(config.heartbeat_interval_secs);
    let inventory_every = Duration::from_secs(config.inventory_interval_secs.max(1));
    let gpu_enabled = config.gpu;
    let mut collectors = tokio::task::spawn_blocking(move || Collectors::new(gpu_enabled))
        .await
        .map_err(|e| AgentError::Collector(e.to_string()))?;
    let mut heartbeat_tick = tokio::time::interval(interval);
    heartbeat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inventory_tick = tokio::time::interval(inventory_every);
    inventory_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_inventory: Option<String> = None;
    let mut seq: i64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = inventory_tick.tick() => {
                let (c, inventory) = tokio::task::spawn_blocking(move || {
                    let inv = collectors.inventory();
                    (collectors, inv)
                })
                .await
                .map_err(|e| AgentError::Collector(e.to_string()))?;
                collectors = c;
                let fingerprint = collectors::fingerprint::content_key(&inventory);
                if last_inventory.as_deref() == Some(fingerprint.as_str()) {
                    continue;
                }
                let event = InventoryReported {
                    envelope: Envelope::new::<InventoryReported>(node_id, nerve_platform::now_ms()),
                    ..inventory
                };
                let payload = nerve_schemas::encode(&event)?;
                tracing::info!(event_id = %event.envelope.event_id, "inventory changed; reporting");
                let out = Outgoing::new(subjects::inventory(node_id), event.envelope.event_id, payload);
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
                last_inventory = Some(fingerprint);
            }
            _ = heartbeat_tick.tick() => {
                let (c, sample) = tokio::task::spawn_blocking(move || {
                    let s = collectors.sample();
                    (collectors, s)
                })
                .await
                .map_err(|e| AgentError::Collector(e.to_string()))?;
                collectors = c;
                let event = HeartbeatRecorded {
                    envelope: Envelope::new::<HeartbeatRecorded>(node_id, nerve_platform::now_ms()),
                    seq,
                    interval_secs: interval.as_secs().min(i32::MAX as u64) as i32,
                    ..sample
                };
                seq += 1;
                let payload = nerve_schemas::encode(&event)?;
                let out = Outgoing::new(subjects::heartbeat(node_id), event.envelope.event_id, payload);
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
