//! The fleet snapshot: every node's list row, clusters and effective labels held in memory, so
//! the node list (with its cluster and label filters), the fleet summary and node detail's
//! clusters and labels need no ClickHouse query per request. A list walks only what it selects:
//! per-cluster and per-label posting lists and one search buffer (a substring search over it
//! finds every matching node) are built with the snapshot, and sorts order a number per node.
//! The control tables' newest stream sequence (one small query), then [`nodes_sql`] (one read of
//! every node's current state) and, only when that sequence moved on, clusters, memberships and labels,
//! asked at once, load it; requests share it while it is younger than
//! `api.fleet_snapshot_max_age_ms`. Past half that age the next request starts a reload behind
//! the scenes and is still answered from the old one; past the full age requests wait for a
//! reload, and concurrent waiters share one. With 0 every request waits for a reload that began
//! after it arrived, so it sees everything stored before it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::dto::fleet::{Maintenance, NodeChange, NodeSort, NodeStatus, NodeSummary, SortOrder};
use crate::tags::{TagSet, Tags};
use crate::time::rfc3339_ms;

mod load;

pub use load::{Snapshots, nodes_sql};

/// Every node's list row, clusters and labels at one moment, sorted by node id.
pub struct Snapshot {
    /// When the queries that loaded it started: it holds everything stored before.
    pub taken: Instant,
    nodes: Vec<Entry>,
    tags: Arc<TagSet>,
    index: Index,
}

struct Entry {
    node: NodeSummary,
    /// When its inventory was last reported (0: never).
    reported_at_ms: u64,
}

/// What lets a list touch only the nodes it selects: posting lists and one search text.
#[derive(Default)]
struct Index {
    /// Per cluster id and per `key=value` label, its listed nodes' positions, ascending.
    clusters: HashMap<String, Vec<u32>>,
    labels: HashMap<String, Vec<u32>>,
    /// Every node's lowercase `hostname`, NUL, lowercase `id`, each followed by
    /// [`SEARCH_SEPARATOR`], in one buffer: one substring search over it finds every match.
    search: String,
    /// Where each node's search text starts in `search`, and one past the last.
    search_starts: Vec<u32>,
}

/// Ends each node's search text in [`Index::search`]; needles holding it are matched node by
/// node.
const SEARCH_SEPARATOR: char = '\n';

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
    /// Only nodes in this maintenance state.
    pub maintenance: Option<Maintenance>,
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
                node,
                reported_at_ms,
            })
            .collect();
        nodes.sort_unstable_by(|a, b| a.node.id.cmp(&b.node.id));
        let index = Index::build(&nodes, &tags);
        Self {
            taken,
            nodes,
            tags,
            index,
        }
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
                reported_at: rfc3339_ms(e.reported_at_ms),
                reported_at_ms: e.reported_at_ms,
            })
            .collect()
    }

    /// The page `[offset, offset + limit)` of the selected nodes in order, and how many were
    /// selected. Ties in the sort key are broken by node id in the same direction, as SQL did.
    pub fn page(&self, sel: &Selection, offset: u64, limit: u32) -> (Vec<NodeSummary>, u64) {
        let mut picked = self.select(sel);
        let total = picked.len() as u64;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(picked.len());
        let end = start.saturating_add(limit as usize).min(picked.len());
        let sort = sel.sort.unwrap_or(NodeSort::Id);
        let desc = sel.order == Some(SortOrder::Desc);
        match sort {
            // Positions are in id order already.
            NodeSort::Id if desc => picked.reverse(),
            NodeSort::Id => {}
            NodeSort::Hostname => {
                let cmp = |a: &u32, b: &u32| {
                    let (a, b) = (&self.nodes[*a as usize].node, &self.nodes[*b as usize].node);
                    let o = a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id));
                    if desc { o.reverse() } else { o }
                };
                first_in_order(&mut picked, end, cmp);
            }
            _ => {
                // A number per node, read once, so that ordering compares pairs in one
                // buffer rather than chasing entries; the position breaks ties by id.
                let mut keyed: Vec<(i64, u32)> = picked
                    .iter()
                    .map(|&i| (sort_key(sort, &self.nodes[i as usize].node), i))
                    .collect();
                let cmp = |a: &(i64, u32), b: &(i64, u32)| {
                    if desc { b.cmp(a) } else { a.cmp(b) }
                };
                first_in_order(&mut keyed, end, cmp);
                picked = keyed.into_iter().map(|(_, i)| i).collect();
            }
        }
        let page = picked[start..end]
            .iter()
            .map(|&i| self.nodes[i as usize].node.clone())
            .collect();
        (page, total)
    }

    /// The positions of the selected nodes, ascending (so by id): the narrowest of the cluster
    /// and label posting lists or the search matches is walked, and the rest are checked on it.
    fn select(&self, sel: &Selection) -> Vec<u32> {
        let by_cluster = posting(&self.index.clusters, &sel.cluster);
        let by_label = posting(&self.index.labels, &sel.label);
        let needle = sel.search.as_ref().map(|s| s.to_ascii_lowercase());
        let mut needle_checked = false;
        let mut picked: Vec<u32> = match (by_cluster, by_label) {
            (Some(a), Some(b)) => intersect(a, b),
            (Some(a), None) | (None, Some(a)) => a.to_vec(),
            (None, None) => match &needle {
                Some(n) if !n.contains(SEARCH_SEPARATOR) => {
                    needle_checked = true;
                    self.index.find(n)
                }
                _ => (0..self.nodes.len() as u32).collect(),
            },
        };
        let status_ok = |s: NodeStatus| {
            sel.status.is_none_or(|want| s == want) && (!sel.not_online || s != NodeStatus::Online)
        };
        let check_status = sel.status.is_some() || sel.not_online;
        let check_needle = needle.as_deref().filter(|_| !needle_checked);
        if check_status || check_needle.is_some() || sel.maintenance.is_some() {
            picked.retain(|&i| {
                let node = &self.nodes[i as usize].node;
                status_ok(node.status)
                    && sel.maintenance.is_none_or(|m| node.maintenance == m)
                    && check_needle.is_none_or(|n| self.index.text(i).contains(n))
            });
        }
        picked
    }
}

impl Index {
    /// Posting lists and the search text of `nodes` (sorted by id) with `tags`.
    fn build(nodes: &[Entry], tags: &TagSet) -> Self {
        let mut index = Index {
            search: String::with_capacity(nodes.len() * 64),
            search_starts: Vec::with_capacity(nodes.len() + 1),
            ..Index::default()
        };
        for (i, e) in nodes.iter().enumerate() {
            let i = i as u32;
            index.search_starts.push(index.search.len() as u32);
            index.search.push_str(&e.node.hostname.to_ascii_lowercase());
            index.search.push('\0');
            index.search.push_str(&e.node.id.to_ascii_lowercase());
            index.search.push(SEARCH_SEPARATOR);
            let Some(t) = tags.nodes.get(&e.node.id) else {
                continue;
            };
            for c in &t.clusters {
                push_posting(&mut index.clusters, &c.cluster_id, i);
            }
            for l in &t.labels {
                push_posting(&mut index.labels, l, i);
            }
        }
        index.search_starts.push(index.search.len() as u32);
        index
    }

    /// Node `i`'s search text, without the separator.
    fn text(&self, i: u32) -> &str {
        let (start, end) = (
            self.search_starts[i as usize] as usize,
            self.search_starts[i as usize + 1] as usize,
        );
        &self.search[start..end - SEARCH_SEPARATOR.len_utf8()]
    }

    /// The positions of the nodes whose text holds `needle` (lowercase, without the
    /// separator, so no match spans two nodes), ascending.
    fn find(&self, needle: &str) -> Vec<u32> {
        let mut found: Vec<u32> = Vec::new();
        for at in memchr::memmem::find_iter(self.search.as_bytes(), needle.as_bytes()) {
            let i = self.search_starts.partition_point(|&s| s as usize <= at) as u32 - 1;
            if found.last() != Some(&i) {
                found.push(i);
            }
        }
        found
    }
}

/// The posting list of `key` in `map` (empty if none), or `None` when no key is asked for.
fn posting<'a>(map: &'a HashMap<String, Vec<u32>>, key: &Option<String>) -> Option<&'a [u32]> {
    key.as_ref()
        .map(|k| map.get(k).map_or(&[][..], Vec::as_slice))
}

fn push_posting(map: &mut HashMap<String, Vec<u32>>, key: &str, i: u32) {
    match map.get_mut(key) {
        Some(list) => list.push(i),
        None => {
            map.insert(key.to_owned(), vec![i]);
        }
    }
}

/// The positions in both ascending lists.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .copied()
        .filter(|i| large.binary_search(i).is_ok())
        .collect()
}

/// Puts the first `end` of `items` in `cmp` order (the rest in any order): only those are
/// sorted, after a selection.
fn first_in_order<T>(items: &mut [T], end: usize, cmp: impl Fn(&T, &T) -> Ordering) {
    if end == 0 {
        return;
    }
    if end < items.len() {
        items.select_nth_unstable_by(end - 1, &cmp);
    }
    items[..end].sort_unstable_by(&cmp);
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

/// A number whose ascending order is `sort`'s ascending order (not for id or hostname).
fn sort_key(sort: NodeSort, n: &NodeSummary) -> i64 {
    // `total_cmp`'s order as an integer.
    fn f64_key(x: f64) -> i64 {
        let bits = x.to_bits() as i64;
        bits ^ ((((bits >> 63) as u64) >> 1) as i64)
    }
    match sort {
        NodeSort::Id | NodeSort::Hostname => 0,
        NodeSort::Status => i64::from(status_rank(n.status)),
        NodeSort::Cpu => f64_key(f64::from(n.cpu_pct)),
        NodeSort::Mem => f64_key(mem_ratio(n)),
        NodeSort::Gpu => f64_key(f64::from(n.gpu_util_pct_avg)),
        NodeSort::LastSeen => i64::try_from(n.last_seen_ms).unwrap_or(i64::MAX),
    }
}

/// A node's status from its liveness state (`''` = never judged = online).
pub(crate) fn status_from(state: &str) -> NodeStatus {
    NodeStatus::parse(state).unwrap_or(NodeStatus::Online)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::fleet::ClusterRef;

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
            maintenance: Maintenance::InService,
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

    /// `page` against the plain definition (filter every node, sort everything by key then
    /// id) over a fleet with many ties, for every filter and sort combination.
    #[test]
    fn indexed_pages_match_a_full_sort_of_the_filtered_fleet() {
        use NodeStatus::*;
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut rows = Vec::new();
        let mut tagged = HashMap::new();
        for k in 0..300u64 {
            let id = format!("n{:03}", k * 919 % 1000); // unique, not in order
            let status = [Online, Suspect, Offline][next(3) as usize];
            let cpu = [0.0, 12.5, 50.0, 99.0, -0.0][next(5) as usize];
            let mut n = node(
                &id,
                &format!("Host-{}", next(40)),
                status,
                cpu,
                (next(3), 4),
            );
            n.last_seen_ms = next(5);
            rows.push((n, k));
            let tags = Tags {
                clusters: (0..next(3)).map(|c| cluster(&format!("c{c}"))).collect(),
                labels: ["rack", "zone"]
                    .iter()
                    .map(|key| (key, next(3), next(2)))
                    .filter(|(_, keep, _)| *keep > 0)
                    .map(|(key, _, value)| format!("{key}=r{value}"))
                    .collect(),
            };
            tagged.insert(id, Arc::new(tags));
        }
        let f = Snapshot::new(
            Instant::now(),
            rows.clone(),
            Arc::new(TagSet {
                version: 1,
                clusters: vec![cluster("c0"), cluster("c1")],
                nodes: tagged.clone(),
            }),
        );
        let mut plain: Vec<NodeSummary> = rows.into_iter().map(|(n, _)| n).collect();
        plain.sort_by(|a, b| a.id.cmp(&b.id));
        let mut selections = Vec::new();
        for status in [None, Some(Online), Some(Offline)] {
            for search in [None, Some("host-1"), Some("N01"), Some("\0n"), Some("x\ny")] {
                for cluster in [None, Some("c0"), Some("c9")] {
                    for label in [None, Some("rack=r1")] {
                        selections.push(Selection {
                            status,
                            search: search.map(str::to_owned),
                            cluster: cluster.map(str::to_owned),
                            label: label.map(str::to_owned),
                            ..Selection::default()
                        });
                    }
                }
            }
        }
        let sorts = [
            None,
            Some(NodeSort::Id),
            Some(NodeSort::Hostname),
            Some(NodeSort::Status),
            Some(NodeSort::Cpu),
            Some(NodeSort::Mem),
            Some(NodeSort::Gpu),
            Some(NodeSort::LastSeen),
        ];
        for filter in selections {
            // The plain definition of what `filter` selects, in id order.
            let selected: Vec<&NodeSummary> = plain
                .iter()
                .filter(|n| {
                    let t = tagged.get(&n.id);
                    let text = format!("{}\0{}", n.hostname, n.id).to_ascii_lowercase();
                    filter.status.is_none_or(|s| n.status == s)
                        && filter
                            .search
                            .as_ref()
                            .is_none_or(|q| text.contains(&q.to_ascii_lowercase()))
                        && filter.cluster.as_ref().is_none_or(|c| {
                            t.is_some_and(|t| t.clusters.iter().any(|r| &r.cluster_id == c))
                        })
                        && filter
                            .label
                            .as_ref()
                            .is_none_or(|l| t.is_some_and(|t| t.labels.contains(l)))
                })
                .collect();
            for sort in sorts {
                for order in [SortOrder::Asc, SortOrder::Desc] {
                    let sel = Selection {
                        sort,
                        order: Some(order),
                        ..filter.clone()
                    };
                    let mut want = selected.clone();
                    let by = sort.unwrap_or(NodeSort::Id);
                    want.sort_by(|a, b| match by {
                        NodeSort::Id => a.id.cmp(&b.id),
                        NodeSort::Hostname => a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)),
                        _ => sort_key(by, a).cmp(&sort_key(by, b)).then(a.id.cmp(&b.id)),
                    });
                    if order == SortOrder::Desc {
                        want.reverse();
                    }
                    let want: Vec<&str> = want.iter().map(|n| n.id.as_str()).collect();
                    for (offset, limit) in [(0, 7), (5, 20), (0, 400)] {
                        let got = f.page(&sel, offset, limit);
                        assert_eq!(got.1, want.len() as u64, "{sel:?}");
                        let end = (offset as usize + limit as usize).min(want.len());
                        let start = (offset as usize).min(end);
                        assert_eq!(ids(&got), want[start..end], "{sel:?} {offset} {limit}");
                    }
                }
            }
        }
    }
}
