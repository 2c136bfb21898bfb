//! The fleet snapshot: every node's list row, clusters and effective labels held in memory, so
//! the node list (with its cluster and label filters), the fleet summary and node detail's
//! clusters and labels need no ClickHouse query per request. Four queries asked at once
//! (`fleet::NODES`, ≈ 0.1 s at 100,000 nodes; clusters, memberships, labels) load it; requests share it while it is younger
//! than `api.fleet_snapshot_max_age_ms`. Past half that age the next request starts a reload
//! behind the scenes and is still answered from the old one; past the full age requests wait for
//! a reload, and concurrent waiters share one. With 0 every request waits for a reload that began
//! after it arrived, so it sees everything stored before it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nerve_platform::metrics::Counter;

use crate::AppState;
use crate::dto::{ClusterRef, NodeChange, NodeSort, NodeStatus, NodeSummary, SortOrder};
use crate::error::ApiError;

/// Every node's list row, clusters and labels at one moment, sorted by node id.
pub struct Snapshot {
    /// When the queries that loaded it started: it holds everything stored before.
    pub taken: Instant,
    nodes: Vec<Entry>,
    tags: Arc<TagSet>,
}

/// A node's clusters (by name) and effective labels (sorted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    pub clusters: Vec<ClusterRef>,
    pub labels: Vec<String>,
}

/// Every live cluster and the tags of every node with a cluster or a label (listed or not: a
/// node can be labelled before its first heartbeat), as of a control-stream sequence.
#[derive(Debug, Default)]
pub struct TagSet {
    /// The newest control-stream sequence in the tables they were read from: a reload that
    /// finds it unchanged keeps this set instead of reading it again.
    pub version: u64,
    /// By name.
    pub clusters: Vec<ClusterRef>,
    pub nodes: HashMap<String, Arc<Tags>>,
}

struct Entry {
    node: NodeSummary,
    tags: Option<Arc<Tags>>,
    /// When its inventory was last reported (0: never).
    reported_at_ms: u64,
    /// Lowercase `hostname`, NUL, lowercase `id`: what search text is looked for in.
    search: String,
}

/// Which nodes of a snapshot a list asks for, in what order.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub status: Option<NodeStatus>,
    pub not_online: bool,
    /// Matched ASCII-case-insensitively against hostname and node id.
    pub search: Option<String>,
    /// Only members of this cluster (an id).
    pub cluster: Option<String>,
    /// Only nodes with this effective label (`key=value`).
    pub label: Option<String>,
    pub sort: Option<NodeSort>,
    pub order: Option<SortOrder>,
}

impl Snapshot {
    /// A snapshot of `nodes` with their inventory report times (any order) and `tags`, taken at
    /// `taken`.
    pub fn new(taken: Instant, nodes: Vec<(NodeSummary, u64)>, tags: Arc<TagSet>) -> Self {
        let mut nodes: Vec<Entry> = nodes
            .into_iter()
            .map(|(node, reported_at_ms)| Entry {
                reported_at_ms,
                tags: tags.nodes.get(&node.id).cloned(),
                search: format!(
                    "{}\0{}",
                    node.hostname.to_ascii_lowercase(),
                    node.id.to_ascii_lowercase()
                ),
                node,
            })
            .collect();
        nodes.sort_unstable_by(|a, b| a.node.id.cmp(&b.node.id));
        Self { taken, nodes, tags }
    }

    /// A node's clusters and labels (none if it has neither).
    pub fn tags(&self, id: &str) -> Option<&Tags> {
        self.tags.nodes.get(id).map(|t| &**t)
    }

    /// The id of the live cluster with id or name `key`.
    pub fn cluster_id(&self, key: &str) -> Option<&str> {
        self.tags
            .clusters
            .iter()
            .find(|c| c.cluster_id == key || c.name == key)
            .map(|c| c.cluster_id.as_str())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeSummary> {
        self.nodes.iter().map(|e| &e.node)
    }

    /// The `n` nodes whose inventory was reported last, newest first.
    pub fn recently_reported(&self, n: usize) -> Vec<NodeChange> {
        let mut reported: Vec<&Entry> =
            self.nodes.iter().filter(|e| e.reported_at_ms > 0).collect();
        let newest_first = |a: &&Entry, b: &&Entry| {
            b.reported_at_ms
                .cmp(&a.reported_at_ms)
                .then_with(|| a.node.id.cmp(&b.node.id))
        };
        if n < reported.len() {
            reported.select_nth_unstable_by(n, newest_first);
            reported.truncate(n);
        }
        reported.sort_unstable_by(newest_first);
        reported
            .into_iter()
            .map(|e| NodeChange {
                id: e.node.id.clone(),
                hostname: e.node.hostname.clone(),
                reported_at: crate::fleet::rfc3339_ms(e.reported_at_ms),
                reported_at_ms: e.reported_at_ms,
            })
            .collect()
    }

    /// The page `[offset, offset + limit)` of the selected nodes in order, and how many were
    /// selected. Ties in the sort key are broken by node id in the same direction, as SQL did.
    pub fn page(&self, sel: &Selection, offset: u64, limit: u32) -> (Vec<NodeSummary>, u64) {
        let needle = sel.search.as_ref().map(|s| s.to_ascii_lowercase());
        let keep = |e: &&Entry| {
            sel.status.is_none_or(|s| e.node.status == s)
                && (!sel.not_online || e.node.status != NodeStatus::Online)
                && needle
                    .as_ref()
                    .is_none_or(|n| e.search.contains(n.as_str()))
                && sel.cluster.as_ref().is_none_or(|c| {
                    e.tags
                        .as_ref()
                        .is_some_and(|t| t.clusters.iter().any(|r| &r.cluster_id == c))
                })
                && sel
                    .label
                    .as_ref()
                    .is_none_or(|l| e.tags.as_ref().is_some_and(|t| t.labels.contains(l)))
        };
        let mut picked: Vec<&Entry> = self.nodes.iter().filter(keep).collect();
        let total = picked.len() as u64;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(picked.len());
        let end = start.saturating_add(limit as usize).min(picked.len());
        let sort = sel.sort.unwrap_or(NodeSort::Id);
        let desc = sel.order == Some(SortOrder::Desc);
        let cmp = |a: &&Entry, b: &&Entry| {
            let o = compare(sort, &a.node, &b.node);
            if desc { o.reverse() } else { o }
        };
        if sort == NodeSort::Id {
            if desc {
                picked.reverse();
            }
        } else if end > 0 {
            // Only the first `end` need their order: select them, then sort those.
            if end < picked.len() {
                picked.select_nth_unstable_by(end - 1, cmp);
            }
            picked[..end].sort_unstable_by(cmp);
        }
        let page = picked[start..end].iter().map(|e| e.node.clone()).collect();
        (page, total)
    }
}

fn status_rank(s: NodeStatus) -> u8 {
    match s {
        NodeStatus::Online => 1,
        NodeStatus::Suspect => 2,
        NodeStatus::Offline => 3,
    }
}

fn mem_ratio(n: &NodeSummary) -> f64 {
    n.mem_used_bytes as f64 / n.mem_total_bytes.max(1) as f64
}

/// Ascending order by `sort`, then by node id.
fn compare(sort: NodeSort, a: &NodeSummary, b: &NodeSummary) -> Ordering {
    let key = match sort {
        NodeSort::Id => Ordering::Equal,
        NodeSort::Hostname => a.hostname.cmp(&b.hostname),
        NodeSort::Status => status_rank(a.status).cmp(&status_rank(b.status)),
        NodeSort::Cpu => a.cpu_pct.total_cmp(&b.cpu_pct),
        NodeSort::Mem => mem_ratio(a).total_cmp(&mem_ratio(b)),
        NodeSort::Gpu => a.gpu_util_pct_avg.total_cmp(&b.gpu_util_pct_avg),
        NodeSort::LastSeen => a.last_seen_ms.cmp(&b.last_seen_ms),
    };
    key.then_with(|| a.id.cmp(&b.id))
}

/// The current snapshot and the one reload that may be under way.
pub(crate) struct Snapshots {
    current: RwLock<Option<Arc<Snapshot>>>,
    reload: Arc<tokio::sync::Mutex<()>>,
    loads: Counter,
    failures: Counter,
}

impl Snapshots {
    pub fn new(metrics: &nerve_platform::metrics::Registry) -> Self {
        Self {
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
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn load(&self, state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
        let taken = Instant::now();
        let previous = self.current().map(|s| s.tags.clone());
        let loaded = async {
            // Read before the tags: a change stored meanwhile makes the next reload read them.
            let version = crate::clusters::tags_version(state).await?;
            let kept = previous.filter(|t| t.version == version);
            let read_tags = kept.is_none();
            let (nodes, rows) = tokio::try_join!(crate::fleet::all_nodes(state), async {
                match read_tags {
                    true => crate::clusters::tag_rows(state).await.map(Some),
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
}

/// A snapshot no older than `api.fleet_snapshot_max_age_ms` (see the module doc).
pub(crate) async fn fleet(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    let snapshots = state.snapshots();
    let max_age = Duration::from_millis(state.config().fleet_snapshot_max_age_ms);
    let asked = Instant::now();
    if let Some(s) = snapshots.current() {
        let age = asked.saturating_duration_since(s.taken);
        if age <= max_age / 2 {
            return Ok(s);
        }
        if age <= max_age {
            if let Ok(turn) = snapshots.reload.clone().try_lock_owned() {
                let state = state.clone();
                tokio::spawn(async move {
                    let _turn = turn;
                    if let Err(e) = state.snapshots().load(&state).await {
                        tracing::warn!(error = %e, "fleet snapshot reload failed");
                    }
                });
            }
            return Ok(s);
        }
    }
    let _turn = snapshots.reload.lock().await;
    match snapshots.current() {
        Some(s) if s.taken >= asked => Ok(s),
        _ => snapshots.load(state).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, status: NodeStatus, cpu: f32, mem: (u64, u64)) -> NodeSummary {
        NodeSummary {
            id: id.into(),
            hostname: host.into(),
            status,
            last_seen: String::new(),
            last_seen_ms: u64::from(id.bytes().map(u32::from).sum::<u32>()),
            heartbeat_interval_secs: 30,
            cpu_pct: cpu,
            mem_used_bytes: mem.0,
            mem_total_bytes: mem.1,
            gpu_count: 8,
            gpu_util_pct_avg: 100.0 - cpu,
            gpu_health: String::new(),
        }
    }

    fn fleet() -> Snapshot {
        use NodeStatus::*;
        Snapshot::new(
            Instant::now(),
            [
                node("n4", "gpu-04", Offline, 10.0, (1, 4)),
                node("n1", "GPU-01", Online, 50.0, (3, 4)),
                node("n3", "cpu-03", Suspect, 50.0, (0, 0)),
                node("n2", "gpu-02", Online, 90.0, (2, 4)),
                node("n5", "gpu-05", Online, 10.0, (4, 4)),
            ]
            .into_iter()
            .zip([300, 0, 100, 300, 200])
            .collect(),
            Arc::new(TagSet {
                version: 1,
                clusters: ["c1", "c2"].map(cluster).into(),
                nodes: [
                    ("n2", &["c1"][..], &["rack=r1"][..]),
                    ("n4", &["c1", "c2"], &["rack=r1", "zone=a"]),
                    ("n5", &["c1"], &[]),
                    ("n9", &["c2"], &["rack=r9"]), // labelled before its first heartbeat
                ]
                .into_iter()
                .map(|(id, clusters, labels)| {
                    let tags = Tags {
                        clusters: clusters.iter().map(|c| cluster(c)).collect(),
                        labels: labels.iter().map(|l| (*l).into()).collect(),
                    };
                    (id.to_owned(), Arc::new(tags))
                })
                .collect(),
            }),
        )
    }

    fn cluster(id: &str) -> ClusterRef {
        ClusterRef {
            cluster_id: id.into(),
            name: format!("name-{id}"),
        }
    }

    fn ids(page: &(Vec<NodeSummary>, u64)) -> Vec<&str> {
        page.0.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn pages_are_cut_from_the_selection_in_order() {
        let f = fleet();
        let all = Selection::default();
        assert_eq!(ids(&f.page(&all, 0, 2)), ["n1", "n2"]);
        assert_eq!(f.page(&all, 0, 2).1, 5);
        assert_eq!(ids(&f.page(&all, 4, 10)), ["n5"]);
        assert!(f.page(&all, 9, 10).0.is_empty());
        let desc = Selection {
            order: Some(SortOrder::Desc),
            ..all.clone()
        };
        assert_eq!(ids(&f.page(&desc, 1, 2)), ["n4", "n3"]);
    }

    #[test]
    fn sorts_break_ties_by_id_in_the_same_direction() {
        let f = fleet();
        let by = |sort, order| Selection {
            sort: Some(sort),
            order: Some(order),
            ..Selection::default()
        };
        let cpu = f.page(&by(NodeSort::Cpu, SortOrder::Asc), 0, 5);
        assert_eq!(ids(&cpu), ["n4", "n5", "n1", "n3", "n2"]);
        let cpu_desc = f.page(&by(NodeSort::Cpu, SortOrder::Desc), 0, 3);
        assert_eq!(ids(&cpu_desc), ["n2", "n3", "n1"]);
        // A page past the first still has the full order before it.
        let second = f.page(&by(NodeSort::Cpu, SortOrder::Desc), 3, 2);
        assert_eq!(ids(&second), ["n5", "n4"]);
        let mem = f.page(&by(NodeSort::Mem, SortOrder::Asc), 0, 5);
        assert_eq!(ids(&mem), ["n3", "n4", "n2", "n1", "n5"]);
        let status = f.page(&by(NodeSort::Status, SortOrder::Desc), 0, 5);
        assert_eq!(ids(&status), ["n4", "n3", "n5", "n2", "n1"]);
        let host = f.page(&by(NodeSort::Hostname, SortOrder::Asc), 0, 5);
        assert_eq!(ids(&host), ["n1", "n3", "n2", "n4", "n5"]); // bytewise: 'G' < 'c' < 'g'
    }

    #[test]
    fn tags_are_found_for_listed_and_unlisted_nodes() {
        let f = fleet();
        assert_eq!(f.tags("n4").unwrap().labels, ["rack=r1", "zone=a"]);
        assert_eq!(f.tags("n9").unwrap().clusters[0].name, "name-c2");
        assert_eq!(f.tags("n1"), None, "listed, untagged");
        assert_eq!(f.cluster_id("name-c2"), Some("c2"));
        assert_eq!(f.cluster_id("c1"), Some("c1"));
        assert_eq!(f.cluster_id("c3"), None);
    }

    #[test]
    fn recent_inventory_reports_come_newest_first() {
        let f = fleet();
        let ids = |v: Vec<NodeChange>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(f.recently_reported(3)), ["n2", "n4", "n5"]);
        assert_eq!(ids(f.recently_reported(9)), ["n2", "n4", "n5", "n3"]);
    }

    #[test]
    fn filters_combine() {
        let f = fleet();
        let search = Selection {
            search: Some("gpu-0".into()),
            ..Selection::default()
        };
        assert_eq!(ids(&f.page(&search, 0, 10)), ["n1", "n2", "n4", "n5"]);
        let by_id = Selection {
            search: Some("N3".into()),
            ..Selection::default()
        };
        assert_eq!(ids(&f.page(&by_id, 0, 10)), ["n3"]);
        let online = Selection {
            status: Some(NodeStatus::Online),
            cluster: Some("c1".into()),
            ..Selection::default()
        };
        assert_eq!(f.page(&online, 0, 1).1, 2);
        assert_eq!(ids(&f.page(&online, 0, 10)), ["n2", "n5"]);
        let labelled = Selection {
            cluster: Some("c1".into()),
            label: Some("rack=r1".into()),
            ..Selection::default()
        };
        assert_eq!(ids(&f.page(&labelled, 0, 10)), ["n2", "n4"]);
        let c2 = Selection {
            cluster: Some("c2".into()),
            ..Selection::default()
        };
        assert_eq!(ids(&f.page(&c2, 0, 10)), ["n4"], "n9 has no list row");
        let nobody = Selection {
            label: Some("rack".into()),
            ..Selection::default()
        };
        assert_eq!(f.page(&nobody, 0, 10).1, 0, "a key alone is no label");
        let attention = Selection {
            not_online: true,
            ..Selection::default()
        };
        assert_eq!(ids(&f.page(&attention, 0, 10)), ["n3", "n4"]);
    }
}
