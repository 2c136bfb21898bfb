//! The engine (in the `nerve project` holding the `remediation` lease): it hears triggers —
//! XIDs and failed health checks from the events stream, alerts firing from the alerts stream,
//! critical or warning GPU verdicts polled from `node_state` — matches each against the enabled
//! policies (trigger, codes or severity, scope), and starts at most one run per node: only on a
//! node in service, only past the circuit breaker ([`crate::breaker`]), whose state it reads
//! back from the journal (so an admin's reset reaches it, and a restart keeps it). Runs that a
//! previous engine left unfinished are ended as `interrupted` and their nodes marked
//! `service_required`: a person looks at a node no ladder finished.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use clickhouse::{Client, Row};
use futures::StreamExt;
use nerve_ingest::EventLog;
use nerve_platform::config::RemediationConfig;
use nerve_platform::metrics::{Counter, Registry};
use nerve_projections::remediation::{BREAKER, PolicyRow, REMEDIATION_LOG, REMEDIATION_POLICIES};
use nerve_projections::scope::{MEMBERS, NodeFilter};
use nerve_schemas::subjects;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Breaker, Decision};
use crate::ladder::Run;
use crate::shared::Shared;
use crate::trigger::Trigger;

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("{stream}: {message}")]
    Stream { stream: String, message: String },
}

/// How long a node whose GPU verdict started a run is not judged by its verdict again (its
/// next heartbeats must catch up with the repair).
const VERDICT_COOLDOWN: Duration = Duration::from_secs(300);
/// How far back the triggers are read at start (what a previous engine may not have handled).
const LOOKBACK: Duration = Duration::from_secs(60);

struct Metrics {
    triggers: Counter,
    runs: Counter,
    held: Counter,
    trips: Counter,
}

/// The nodes, their groups for the breaker, refreshed now and then.
#[derive(Default)]
struct Fleet {
    nodes: HashSet<String>,
    cluster_of: HashMap<String, String>,
    cluster_size: HashMap<String, usize>,
}

impl Fleet {
    async fn load(ch: &Client) -> Result<Self, clickhouse::error::Error> {
        let nodes: Vec<String> = ch
            .query("SELECT DISTINCT node_id FROM node_state")
            .fetch_all()
            .await?;
        let members: Vec<(String, String)> = ch
            .query(&format!(
                "SELECT node_id, min(cluster_id) FROM {MEMBERS} GROUP BY node_id"
            ))
            .fetch_all()
            .await?;
        let mut fleet = Fleet {
            nodes: nodes.into_iter().collect(),
            ..Fleet::default()
        };
        for (node, cluster) in members {
            *fleet.cluster_size.entry(cluster.clone()).or_default() += 1;
            fleet.cluster_of.insert(node, cluster);
        }
        Ok(fleet)
    }

    /// The breaker's group of `node` and its size.
    fn group(&self, node: &str) -> (String, usize) {
        match self.cluster_of.get(node) {
            Some(c) => (c.clone(), self.cluster_size.get(c).copied().unwrap_or(1)),
            None => (String::new(), self.nodes.len().max(1)),
        }
    }
}

/// Runs the engine until `cancel`.
pub async fn run(
    ch: Client,
    nats: async_nats::Client,
    alerts: nerve_alerts::Context,
    config: RemediationConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), RemediationError> {
    let js = jetstream::new(nats.clone());
    let poll = Duration::from_millis(config.poll_interval_ms.max(100));
    let shared = Arc::new(Shared {
        ch,
        log: EventLog::new(Some(nats)),
        alerts,
        ledger_poll: Duration::from_millis(250),
        config,
    });
    let m = Metrics {
        triggers: metrics.counter("nerve_remediation_triggers_total", "Triggers heard", &[]),
        runs: metrics.counter("nerve_remediation_runs_total", "Runs started", &[]),
        held: metrics.counter(
            "nerve_remediation_held_total",
            "Runs the circuit breaker held",
            &[],
        ),
        trips: metrics.counter(
            "nerve_remediation_breaker_trips_total",
            "Times the circuit breaker tripped",
            &[],
        ),
    };
    if shared.config.install_defaults {
        install_defaults(&shared).await?;
    }
    close_interrupted(&shared).await?;
    let cfg = &shared.config;
    let mut breaker = Breaker::new(
        Duration::from_secs(cfg.breaker_window_secs),
        cfg.breaker_max_nodes,
        cfg.breaker_max_pct,
    );
    let (open, since) = breaker_state(&shared.ch).await?;
    breaker.set_open(open);
    // When it tripped (here or before a restart): only a later reset closes it.
    let mut tripped_ms = since;
    let started_ms = nerve_platform::now_ms();
    let since = time::OffsetDateTime::now_utc() - LOOKBACK;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Trigger>(10_000);
    let mut intakes = tokio::task::JoinSet::new();
    for (stream, filters) in [
        (
            nerve_ingest::EVENTS_STREAM,
            vec![
                subjects::GPU_XID_ALL.to_owned(),
                subjects::HEALTH_CHECKS_ALL.to_owned(),
            ],
        ),
        (
            nerve_ingest::ALERTS_STREAM,
            vec![subjects::ALERTS_ALL.to_owned()],
        ),
    ] {
        intakes.spawn(intake(js.clone(), stream, filters, since, tx.clone()));
    }
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut runs = tokio::task::JoinSet::new();
    let mut cooldown: HashMap<String, Instant> = HashMap::new();
    // When the policies were read: a trigger stored later reads them again, so a policy is in
    // force from the moment its save was answered.
    let mut loaded_ms = nerve_platform::now_ms();
    let mut policies = load_policies(&shared.ch).await?;
    let mut fleet = Fleet::load(&shared.ch).await?;
    let mut tick = tokio::time::interval(poll);
    let mut ticks: u64 = 0;
    tracing::info!(
        policies = policies.len(),
        breaker_open = breaker.is_open(),
        "remediation engine running"
    );
    loop {
        let trigger = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = intakes.join_next() => {
                let message = match done {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "the trigger stream ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                runs.abort_all();
                return Err(RemediationError::Stream { stream: "triggers".into(), message });
            }
            Some(_) = runs.join_next() => continue,
            _ = tick.tick() => {
                ticks += 1;
                loaded_ms = nerve_platform::now_ms();
                policies = load_policies(&shared.ch).await?;
                if ticks.is_multiple_of(5) {
                    fleet = Fleet::load(&shared.ch).await?;
                }
                if breaker.is_open() && reset_since(&shared.ch, tripped_ms).await? {
                    tracing::info!("the remediation circuit breaker was reset");
                    breaker.set_open(false);
                }
                for t in verdict_triggers(&shared.ch, &policies).await? {
                    if cooldown.get(&t.node).is_none_or(|at| at.elapsed() >= VERDICT_COOLDOWN) {
                        let _ = tx.try_send(t);
                    }
                }
                continue;
            }
            Some(t) = rx.recv() => t,
        };
        m.triggers.inc();
        tracing::debug!(node = %trigger.node, cause = %trigger.cause, "trigger");
        if trigger.at_ms >= loaded_ms {
            loaded_ms = nerve_platform::now_ms();
            policies = load_policies(&shared.ch).await?;
        }
        // An admin's reset counts from the moment it was answered, too.
        if breaker.is_open() && reset_since(&shared.ch, tripped_ms).await? {
            tracing::info!("the remediation circuit breaker was reset");
            breaker.set_open(false);
        }
        let Some(policy) = first_match(&shared.ch, &policies, &trigger).await? else {
            tracing::debug!(node = %trigger.node, cause = %trigger.cause, "no policy takes it");
            continue;
        };
        let skip = if active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&trigger.node)
        {
            Some("a run is under way on the node")
        } else if !fleet.nodes.contains(&trigger.node) && !known(&shared.ch, &trigger.node).await? {
            Some("no such node")
        } else if !in_service(&shared.ch, &trigger.node).await? {
            Some("the node is not in service")
        } else if trigger.at_ms < started_ms && handled(&shared.ch, &trigger).await? {
            Some("handled before a restart")
        } else {
            None
        };
        if let Some(why) = skip {
            tracing::debug!(node = %trigger.node, cause = %trigger.cause, why, "trigger left alone");
            continue;
        }
        let run = Run {
            run_id: uuid::Uuid::now_v7().to_string(),
            node: trigger.node.clone(),
            steps: policy.steps(),
            cause: trigger.cause.clone(),
            policy,
        };
        if run.policy.dry_run == 0 {
            let (group, size) = fleet.group(&run.node);
            let decision = breaker.admit(Instant::now(), &group, size);
            if decision != Decision::Admitted {
                m.held.inc();
                let tripped = match decision {
                    Decision::Tripped { started, limit } => Some((started, limit)),
                    _ => None,
                };
                run.held(&shared, tripped).await;
                if matches!(decision, Decision::Tripped { .. }) {
                    m.trips.inc();
                    tripped_ms = nerve_platform::now_ms().max(0) as u64;
                }
                continue;
            }
        }
        if trigger.kind == "gpu_health" {
            cooldown.insert(run.node.clone(), Instant::now());
        }
        m.runs.inc();
        active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run.node.clone());
        let (shared, active) = (shared.clone(), active.clone());
        runs.spawn(async move {
            let outcome = run.execute(&shared).await;
            tracing::info!(node = %run.node, policy = %run.policy.name, outcome, "remediation run ended");
            active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run.node);
        });
    }
    // Runs stop with the engine; the next engine ends them as interrupted.
    runs.abort_all();
    Ok(())
}

/// Reads triggers from `stream` (from `since`) into `tx`.
async fn intake(
    js: jetstream::Context,
    stream: &'static str,
    filter_subjects: Vec<String>,
    since: time::OffsetDateTime,
    tx: tokio::sync::mpsc::Sender<Trigger>,
) -> Result<(), String> {
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("{stream}: {e}"))?;
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects,
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{stream}: {e}"))?;
    let mut messages = c.messages().await.map_err(|e| format!("{stream}: {e}"))?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| format!("{stream}: {e}"))?;
        let published = msg
            .info()
            .map(|i| nerve_ingest::publish::published_ms(&i))
            .unwrap_or_default();
        if let Some(t) = Trigger::of(&msg.subject, &msg.payload, published)
            && tx.send(t).await.is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

async fn load_policies(ch: &Client) -> Result<Vec<PolicyRow>, clickhouse::error::Error> {
    ch.query(&format!(
        "SELECT ?fields FROM {REMEDIATION_POLICIES} FINAL \
         WHERE deleted = 0 AND enabled = 1 ORDER BY name"
    ))
    .fetch_all()
    .await
}

/// The first enabled policy (by name) whose trigger and scope take `t`.
async fn first_match(
    ch: &Client,
    policies: &[PolicyRow],
    t: &Trigger,
) -> Result<Option<PolicyRow>, clickhouse::error::Error> {
    for p in policies.iter().filter(|p| t.matches(p)) {
        let filter = NodeFilter {
            node_ids: &p.node_ids,
            clusters: &p.clusters,
            labels: &p.labels,
        };
        let clauses = filter.clauses();
        if clauses.is_empty() {
            return Ok(Some(p.clone()));
        }
        let q = ch
            .query(&format!(
                "SELECT count() FROM (SELECT toString(?) AS node_id) WHERE {}",
                clauses.join(" AND ")
            ))
            .bind(&t.node);
        if filter.bind(q).fetch_one::<u64>().await? > 0 {
            return Ok(Some(p.clone()));
        }
    }
    Ok(None)
}

/// Whether the node has reported (a heartbeat or an inventory).
async fn known(ch: &Client, node: &str) -> Result<bool, clickhouse::error::Error> {
    let n: u64 = ch
        .query(
            "SELECT (SELECT count() FROM node_state WHERE node_id = ?) \
                  + (SELECT count() FROM inventory WHERE node_id = ?)",
        )
        .bind(node)
        .bind(node)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// Whether the node is in service (a node under an operator's maintenance, or in another
/// run's states, is left alone).
async fn in_service(ch: &Client, node: &str) -> Result<bool, clickhouse::error::Error> {
    let state: Option<String> = ch
        .query(&format!(
            "SELECT maintenance FROM {} WHERE node_id = ?",
            nerve_projections::maintenance::CURRENT
        ))
        .bind(node)
        .fetch_optional()
        .await?;
    Ok(state.is_none_or(|s| s.is_empty() || s == "in_service"))
}

/// Whether a run started on the trigger's node at or after it (a trigger read again after a
/// restart).
async fn handled(ch: &Client, t: &Trigger) -> Result<bool, clickhouse::error::Error> {
    let n: u64 = ch
        .query(&format!(
            "SELECT count() FROM {REMEDIATION_LOG} WHERE node_id = ? \
             AND kind IN ('run_started', 'held') AND ts_ms >= ?"
        ))
        .bind(&t.node)
        .bind(t.at_ms.max(0) as u64)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// The breaker as the journal has it: open, and when it last tripped or was reset.
async fn breaker_state(ch: &Client) -> Result<(bool, u64), clickhouse::error::Error> {
    let (open, since): (u8, u64) = ch
        .query(&format!("SELECT open, since_ms FROM {BREAKER}"))
        .fetch_one()
        .await?;
    Ok((open != 0, since))
}

/// Whether an admin reset the breaker after it tripped here at `tripped_ms` (the journal may
/// not hold that trip yet: only a reset newer than it counts).
async fn reset_since(ch: &Client, tripped_ms: u64) -> Result<bool, clickhouse::error::Error> {
    let (open, since) = breaker_state(ch).await?;
    Ok(!open && since >= tripped_ms)
}

/// Ends the runs a previous engine left unfinished, and marks their nodes for service.
async fn close_interrupted(shared: &Shared) -> Result<(), clickhouse::error::Error> {
    #[derive(Row, Deserialize)]
    struct Open {
        node_id: String,
        run_id: String,
        policy_id: String,
        policy_name: String,
        dry_run: u8,
    }
    let open: Vec<Open> = shared
        .ch
        .query(&format!(
            "SELECT node_id, run_id, any(policy_id) AS policy_id, any(policy_name) AS policy_name, \
                    max(dry_run) AS dry_run \
             FROM {REMEDIATION_LOG} WHERE run_id != '' GROUP BY node_id, run_id \
             HAVING countIf(kind = 'run_started') > 0 AND countIf(kind = 'run_ended') = 0"
        ))
        .fetch_all()
        .await?;
    for o in open {
        let run = Run {
            run_id: o.run_id,
            node: o.node_id,
            policy: PolicyRow {
                policy_id: o.policy_id,
                name: o.policy_name,
                dry_run: o.dry_run,
                ..PolicyRow::default()
            },
            steps: Vec::new(),
            cause: String::new(),
        };
        tracing::warn!(node = %run.node, run = %run.run_id, "ending a remediation run left unfinished");
        run.interrupted(shared).await;
    }
    Ok(())
}

/// Saves the default policies when no policy was ever saved.
async fn install_defaults(shared: &Shared) -> Result<(), clickhouse::error::Error> {
    let ever: u64 = shared
        .ch
        .query(&format!("SELECT count() FROM {REMEDIATION_POLICIES}"))
        .fetch_one()
        .await?;
    if ever > 0 {
        return Ok(());
    }
    for p in crate::defaults::policies("nerve (defaults)", nerve_platform::now_ms()) {
        tracing::info!(policy = %p.name, "saving a default remediation policy");
        shared
            .publish(subjects::control_policy(&p.policy_id), &p)
            .await;
    }
    Ok(())
}

/// Triggers from GPU verdicts, when an enabled policy listens for them.
async fn verdict_triggers(
    ch: &Client,
    policies: &[PolicyRow],
) -> Result<Vec<Trigger>, clickhouse::error::Error> {
    let Some(least) = policies
        .iter()
        .filter(|p| p.trigger == "gpu_health")
        .map(|p| p.severity.as_str())
        .min_by_key(|s| crate::trigger::rank(s))
    else {
        return Ok(Vec::new());
    };
    let wanted: Vec<&str> = ["warning", "critical"]
        .into_iter()
        .filter(|s| crate::trigger::rank(s) >= crate::trigger::rank(least))
        .collect();
    let rows: Vec<(String, String, u64)> = ch
        .query(
            "SELECT node_id, gpu_health, last_seen_ms FROM node_state FINAL \
             WHERE has(?, gpu_health)",
        )
        .bind(wanted)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|(node, health, at)| Trigger::verdict(node, health, at as i64))
        .collect())
}
