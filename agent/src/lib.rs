//! The node agent: collects this machine's inventory (on change) and health samples (every
//! heartbeat interval) and publishes them to JetStream as Avro events.
//!
//! Layout mirrors what it does: [`collectors`] (fingerprint = slow inventory, host = fast stats,
//! gpu = NVML), [`publisher`] (ordered, acked, deduplicated publishing) over [`buffer`] (the
//! bounded on-disk outbox that survives NATS outages and restarts), and
//! [`node_id`] (the stable identity kept in the state dir). [`probe`] is one look without NATS.

pub mod buffer;
pub mod collectors;
pub mod enroll;
pub mod node_id;
pub mod probe;
pub mod publisher;
pub mod tasks;

use std::time::Duration;

use nerve_platform::config::{AgentConfig, NatsConfig};
use nerve_platform::metrics::Registry;
use nerve_schemas::{Envelope, GpuXidOccurred, HeartbeatRecorded, InventoryReported, subjects};
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
    Encode(#[from] nerve_ingest::PublishError),
    #[error("collector thread failed: {0}")]
    Collector(String),
    #[error("agent.labels: {0}")]
    Labels(String),
    #[error("agent.dispatch_public_key: {0}")]
    DispatchKey(String),
    #[error("{0}")]
    TaskScope(String),
    #[error("enrollment: {0}")]
    Enroll(#[from] enroll::EnrollError),
}

/// This node's labels from the config (`agent.labels`, with `region` and `datacenter` when
/// set), as the event that publishes them (always sent at start, so removing a label from the
/// config removes it from the node).
pub fn labels_event(
    node_id: &str,
    config: &AgentConfig,
) -> Result<nerve_schemas::NodeLabelsSet, AgentError> {
    let mut labels = config.labels.clone();
    for (key, value) in [
        ("region", &config.region),
        ("datacenter", &config.datacenter),
    ] {
        if value.is_empty() {
            continue;
        }
        if labels.contains_key(key) {
            return Err(AgentError::Labels(format!(
                "{key} is set as agent.{key}; not in agent.labels too"
            )));
        }
        labels.insert(key.to_owned(), value.clone());
    }
    let labels = labels
        .iter()
        .map(|(k, v)| nerve_schemas::control::parse_label(&format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(AgentError::Labels)?;
    Ok(nerve_schemas::NodeLabelsSet {
        envelope: Envelope::new::<nerve_schemas::NodeLabelsSet>(node_id, nerve_platform::now_ms()),
        source: "agent".into(),
        labels,
        requested_by: "agent".into(),
    })
}

/// Runs the agent until `cancel`: heartbeats every interval, inventory at start and on change.
pub async fn run(
    nats: &NatsConfig,
    config: &AgentConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let node_id = node_id::load_or_create(&config.state_dir)?;
    let labels = labels_event(&node_id, config)?;
    // The node's own NATS identity: enrolled before (key and JWT in the state dir), or now.
    let mut identity = nerve_ingest::node_key::NodeKey::load(&config.state_dir)
        .map_err(enroll::EnrollError::Io)?;
    if identity.is_none() && !config.enroll_token.is_empty() {
        identity =
            enroll::enroll_when_reachable(config, &node_id, &config.enroll_token, &cancel).await?;
        if identity.is_none() {
            return Ok(());
        }
    }
    let enrolled = enroll::Enrolled::load(&config.state_dir).map_err(enroll::EnrollError::Io)?;
    let dispatch_key = match (&config.dispatch_public_key, &enrolled) {
        (pinned, _) if !pinned.is_empty() => pinned.clone(),
        (_, Some(e)) => e.dispatch_public_key.clone(),
        _ => String::new(),
    };
    let verifier = std::sync::Arc::new(
        nerve_ingest::offer::OfferVerifier::new(&dispatch_key).map_err(AgentError::DispatchKey)?,
    );
    if config.tasks && dispatch_key.is_empty() {
        tracing::warn!("no agent.dispatch_public_key: every task offer will be refused");
    }
    let span = tracing::info_span!("agent", node_id = %node_id);
    async move {
        tracing::info!(nats = %nats.url, "agent starting");
        let client = nerve_ingest::connect(
            nats,
            nerve_ingest::Who::Node {
                id: &node_id,
                key: identity.as_ref(),
            },
            true,
        )
        .await?;
        let js = async_nats::jetstream::new(client.clone());
        let renewing = match (identity, enrolled) {
            (Some(key), Some(enrolled)) => Some(tokio::spawn(enroll::renew_loop(
                key,
                node_id.clone(),
                enrolled,
                client.clone(),
                metrics.clone(),
                cancel.clone(),
            ))),
            _ => None,
        };
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
        let out = Outgoing::event(subjects::control_node(&node_id), &labels)?;
        let _ = tx.send(out).await;
        let rules = if config.tasks {
            Some(tasks::Rules::of(config).map_err(AgentError::TaskScope)?)
        } else {
            None
        };
        let tasks = rules.map(|rules| {
            tokio::spawn(tasks::serve(
                client.clone(),
                node_id.clone(),
                rules,
                tx.clone(),
                verifier,
                cancel.clone(),
            ))
        });
        let collected = collect_loop(&node_id, config, tx, cancel.clone()).await;
        if let Some(handle) = tasks {
            match handle.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "task runner could not subscribe"),
                Err(e) => tracing::warn!(error = %e, "task runner failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(renewing) = renewing {
            let _ = renewing.await;
        }
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
    let refresh_every = Duration::from_secs(config.inventory_refresh_secs.max(1));
    let gpu_enabled = config.gpu;
    let paths = collectors::fingerprint::HostPaths {
        procfs: config.procfs_path.clone(),
        sysfs: config.sysfs_path.clone(),
        rootfs: config.rootfs_path.clone(),
    };
    let ledger = collectors::gpu::XidLedger::default();
    let xid_ledger = ledger.clone();
    let mut collectors =
        tokio::task::spawn_blocking(move || Collectors::new(gpu_enabled, paths, xid_ledger))
            .await
            .map_err(|e| AgentError::Collector(e.to_string()))?;
    let (xid_tx, mut xid_rx) = mpsc::channel::<collectors::gpu::XidEvent>(256);
    let stop_xids = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop_xids_on_exit = StopOnDrop(stop_xids.clone());
    #[cfg(feature = "gpu")]
    if collectors.has_nvml() {
        let tx = xid_tx.clone();
        collectors::gpu::XidWatcher::spawn(ledger, stop_xids, move |e| tx.blocking_send(e).is_ok())
            .map_err(|e| AgentError::Collector(e.to_string()))?;
    }
    #[cfg(not(feature = "gpu"))]
    let _ = (ledger, stop_xids);
    drop(xid_tx);
    let mut xids_open = true;
    let mut heartbeat_tick = tokio::time::interval(interval);
    heartbeat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inventory_tick = tokio::time::interval(inventory_every);
    inventory_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The content key of the last report, and when it was sent (for the daily refresh).
    let mut last_inventory: Option<(String, tokio::time::Instant)> = None;
    let mut seq: i64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            xid = xid_rx.recv(), if xids_open => {
                let Some(x) = xid else {
                    xids_open = false;
                    continue;
                };
                let info = collectors::gpu_health::decode_xid(x.xid.min(u32::MAX as u64) as u32);
                let event = GpuXidOccurred {
                    envelope: Envelope::new::<GpuXidOccurred>(node_id, x.at_ms),
                    gpu_index: x.gpu_index.min(i32::MAX as u32) as i32,
                    gpu_uuid: x.gpu_uuid,
                    pci_bus_id: x.pci_bus_id,
                    xid: x.xid.min(i64::MAX as u64) as i64,
                    meaning: info.meaning.to_owned(),
                    severity: match info.severity {
                        collectors::gpu_health::Verdict::Critical => "critical",
                        _ => "warning",
                    }
                    .to_owned(),
                    likely_application: info.likely_application,
                    gpu_xid_total: x.gpu_total.min(i64::MAX as u64) as i64,
                };
                let out = Outgoing::event(subjects::gpu_xid(node_id), &event)?;
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
            }
            _ = inventory_tick.tick() => {
                let refresh = last_inventory
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= refresh_every);
                let state_dir = config.state_dir.clone();
                let (c, inventory) = tokio::task::spawn_blocking(move || {
                    let inv = collectors.inventory(refresh);
                    // What the `gpu` health check later expects to find on the bus.
                    tasks::health::remember_gpus(
                        &state_dir,
                        inv.gpus.iter().map(|g| g.pci_bus_id.clone()),
                    );
                    (collectors, inv)
                })
                .await
                .map_err(|e| AgentError::Collector(e.to_string()))?;
                collectors = c;
                let fingerprint = collectors::fingerprint::content_key(&inventory);
                let unchanged = last_inventory
                    .as_ref()
                    .is_some_and(|(key, _)| *key == fingerprint);
                if unchanged && !refresh {
                    continue;
                }
                let located = !config.region.is_empty() || !config.datacenter.is_empty();
                let event = InventoryReported {
                    envelope: Envelope::new::<InventoryReported>(node_id, nerve_platform::now_ms()),
                    location: located.then(|| nerve_schemas::Location {
                        region: config.region.clone(),
                        datacenter: config.datacenter.clone(),
                    }),
                    ..inventory
                };
                let out = Outgoing::event(subjects::inventory(node_id), &event)?;
                tracing::info!(
                    event_id = %event.envelope.event_id,
                    why = if unchanged { "daily refresh" } else { "changed" },
                    "reporting inventory"
                );
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
                last_inventory = Some((fingerprint, tokio::time::Instant::now()));
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
                let out = Outgoing::event(subjects::heartbeat(node_id), &event)?;
                if tx.send(out).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Sets the flag when dropped: stops the XID thread however the collect loop ends.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_datacenter_are_published_as_labels() {
        let mut config = AgentConfig {
            region: "eu-west".into(),
            datacenter: "ams1".into(),
            ..AgentConfig::default()
        };
        config.labels.insert("rack".into(), "r12".into());
        let set = labels_event("n1", &config).expect("labels");
        let text: Vec<String> = set
            .labels
            .iter()
            .map(|l| format!("{}={}", l.key, l.value))
            .collect();
        assert_eq!(text, ["datacenter=ams1", "rack=r12", "region=eu-west"]);
        config.labels.insert("region".into(), "us-east".into());
        let err = labels_event("n1", &config).unwrap_err().to_string();
        assert!(err.contains("agent.region"), "{err}");
        config.region = "bad region".into();
        config.labels.remove("region");
        assert!(
            labels_event("n1", &config).is_err(),
            "a space is no label value"
        );
    }
}
