//! Loading the fleet snapshot: [`Snapshots`] keeps the current one and reloads it from
//! ClickHouse (the nodes from [`nodes_sql`], their clusters and labels from `crate::tags`) as
//! the module above describes.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clickhouse::{Client, Row};
use nerve_platform::metrics::{Counter, Registry};
use nerve_projections::heartbeats::NODE_STATE;
use nerve_projections::inventory::INVENTORY;
use nerve_projections::node_events::NODE_LIVENESS;
use serde::Deserialize;

use super::{Snapshot, status_from};
use crate::dto::fleet::{Maintenance, NodeSummary};
use crate::error::ApiError;
use crate::tags;
use crate::time::rfc3339_ms;

/// The current snapshot and the one reload that may be under way.
pub struct Snapshots {
    ch: Client,
    max_age: Duration,
    current: RwLock<Option<Arc<Snapshot>>>,
    reload: Arc<tokio::sync::Mutex<()>>,
    loads: Counter,
    failures: Counter,
}

impl Snapshots {
    /// Snapshots of the fleet in `ch`, shared while younger than `max_age`.
    pub fn new(ch: Client, max_age: Duration, metrics: &Registry) -> Arc<Self> {
        Arc::new(Self {
            ch,
            max_age,
            current: RwLock::new(None),
            reload: Arc::new(tokio::sync::Mutex::new(())),
            loads: metrics.counter(
                "nerve_api_fleet_snapshot_loads_total",
                "Fleet snapshots loaded from ClickHouse",
                &[],
            ),
            failures: metrics.counter(
                "nerve_api_fleet_snapshot_load_failures_total",
                "Fleet snapshot loads that failed",
                &[],
            ),
        })
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn load(&self) -> Result<Arc<Snapshot>, ApiError> {
        let taken = Instant::now();
        let previous = self.current().map(|s| s.tags.clone());
        let loaded = async {
            // Read before the tags: a change stored meanwhile makes the next reload read them.
            let version = tags::version(&self.ch).await?;
            let kept = previous.filter(|t| t.version == version);
            let read_tags = kept.is_none();
            let (nodes, rows) = tokio::try_join!(all_nodes(&self.ch), async {
                match read_tags {
                    true => tags::rows(&self.ch).await.map(Some),
                    false => Ok(None),
                }
            })?;
            Ok::<_, ApiError>((nodes, kept, rows, version))
        }
        .await;
        let (nodes, kept, rows, version) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                self.failures.inc();
                return Err(e);
            }
        };
        // Sorting and indexing 100,000 rows and folding their tags is CPU work: off the
        // request workers.
        let snapshot = tokio::task::spawn_blocking(move || {
            let tags =
                kept.unwrap_or_else(|| Arc::new(rows.map(|r| r.fold(version)).unwrap_or_default()));
            Arc::new(Snapshot::new(taken, nodes, tags))
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("fleet snapshot build failed: {e}")))?;
        self.loads.inc();
        tracing::debug!(
            nodes = snapshot.len(),
            ms = taken.elapsed().as_millis() as u64,
            "fleet snapshot loaded"
        );
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // A slower reload that began earlier must not replace a newer one.
        if current.as_ref().is_none_or(|c| c.taken <= taken) {
            *current = Some(snapshot.clone());
        }
        Ok(snapshot)
    }

    /// A snapshot no older than the max age (see the module doc).
    pub async fn fleet(self: &Arc<Self>) -> Result<Arc<Snapshot>, ApiError> {
        let asked = Instant::now();
        if let Some(s) = self.current() {
            let age = asked.saturating_duration_since(s.taken);
            if age <= self.max_age / 2 {
                return Ok(s);
            }
            if age <= self.max_age {
                if let Ok(turn) = self.reload.clone().try_lock_owned() {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _turn = turn;
                        if let Err(e) = this.load().await {
                            tracing::warn!(error = %e, "fleet snapshot reload failed");
                        }
                    });
                }
                return Ok(s);
            }
        }
        let _turn = self.reload.lock().await;
        match self.current() {
            Some(s) if s.taken >= asked => Ok(s),
            _ => self.load().await,
        }
    }
}

/// A node's list row as [`nodes_sql`] reads it.
#[derive(Debug, Row, Deserialize)]
struct ListRow {
    node_id: String,
    hostname: String,
    /// The latest inventory report (0: none).
    reported_at_ms: u64,
    last_seen_ms: u64,
    interval_secs: u32,
    cpu_pct: f32,
    mem_used_bytes: u64,
    mem_total_bytes: u64,
    gpu_count: u16,
    gpu_util_pct_avg: f32,
    gpu_health: String,
    status: String,
    maintenance: String,
}

/// Every node with its hostname, `status` and `maintenance` (empty: in service; ClickHouse
/// 18.16 joins one table per SELECT, hence the nesting).
pub fn nodes_sql() -> String {
    format!(
        "(SELECT node_id, hostname, reported_at_ms, last_seen_ms, \
        interval_secs, cpu_pct, mem_used_bytes, mem_total_bytes, gpu_count, gpu_util_pct_avg, \
        gpu_health, status, maintenance \
    FROM (SELECT node_id, hostname, reported_at_ms, last_seen_ms, \
        interval_secs, cpu_pct, mem_used_bytes, mem_total_bytes, gpu_count, gpu_util_pct_avg, \
        gpu_health, if(live = '', 'online', live) AS status \
    FROM (SELECT node_id, hostname, reported_at_ms, last_seen_ms, interval_secs, cpu_pct, \
                 mem_used_bytes, mem_total_bytes, gpu_count, gpu_util_pct_avg, gpu_health \
          FROM {NODE_STATE} FINAL \
          ANY LEFT JOIN (SELECT node_id, hostname, reported_at_ms FROM {INVENTORY} FINAL) \
          USING node_id) \
    ANY LEFT JOIN (SELECT node_id, state AS live FROM {NODE_LIVENESS} FINAL) USING node_id) \
    ANY LEFT JOIN (SELECT node_id, maintenance FROM {MAINTENANCE}) USING node_id)",
        MAINTENANCE = nerve_projections::maintenance::CURRENT
    )
}

impl ListRow {
    fn summary(self) -> NodeSummary {
        NodeSummary {
            status: status_from(&self.status),
            gpu_health: self.gpu_health,
            last_seen: rfc3339_ms(self.last_seen_ms),
            id: self.node_id,
            hostname: self.hostname,
            last_seen_ms: self.last_seen_ms,
            heartbeat_interval_secs: self.interval_secs,
            cpu_pct: self.cpu_pct,
            mem_used_bytes: self.mem_used_bytes,
            mem_total_bytes: self.mem_total_bytes,
            gpu_count: self.gpu_count,
            gpu_util_pct_avg: self.gpu_util_pct_avg,
            maintenance: Maintenance::parse(&self.maintenance).unwrap_or_default(),
        }
    }
}

/// Every node's list row and when its inventory was last reported (0: never): what the fleet
/// snapshot is loaded from.
async fn all_nodes(ch: &Client) -> Result<Vec<(NodeSummary, u64)>, ApiError> {
    let rows: Vec<ListRow> = ch
        .query(&format!(
            "SELECT node_id, hostname, reported_at_ms, last_seen_ms, interval_secs, cpu_pct, \
                    mem_used_bytes, mem_total_bytes, gpu_count, gpu_util_pct_avg, gpu_health, \
                    status, maintenance FROM {}",
            nodes_sql()
        ))
        // A reload runs behind the requests: one ClickHouse thread, so that it does not take
        // every core from the queries that requests are waiting for.
        .with_setting("max_threads", "1")
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let reported = r.reported_at_ms;
            (r.summary(), reported)
        })
        .collect())
}
