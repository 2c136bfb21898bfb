//! Each node's clusters and effective labels, as the fleet snapshot holds them: read from the
//! control projection's tables (only when their newest stream sequence moved) and folded in
//! memory, the operator's label overriding the agent's of the same key; or, for a past time,
//! folded from the logs up to it.

use std::collections::HashMap;
use std::sync::Arc;

use clickhouse::Client;
use nerve_projections::control::{CLUSTER_LOG, CLUSTER_MEMBERS, LABEL_LOG, LabelsRow, NODE_LABELS};
use nerve_projections::scope::{CLUSTERS, MEMBERS};

use crate::dto::fleet::ClusterRef;
use crate::error::ApiError;

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

/// A node's effective labels: the operator's, plus the agent's whose keys the operator did not
/// set; sorted.
pub fn effective_labels(op: &[String], op_keys: &[String], agent: &[String]) -> Vec<String> {
    let mut out: Vec<String> = op.to_vec();
    out.extend(
        agent
            .iter()
            .filter(|l| {
                let key = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
                !op_keys.iter().any(|k| k == key)
            })
            .cloned(),
    );
    out.sort();
    out
}

/// Clusters by name, then id.
pub(crate) fn by_name(a: &ClusterRef, b: &ClusterRef) -> std::cmp::Ordering {
    (&a.name, &a.cluster_id).cmp(&(&b.name, &b.cluster_id))
}

/// The newest control-stream sequence stored in the tables clusters and labels are read from
/// (0: none): while it stays the same, so do every node's clusters and labels.
pub async fn version(ch: &Client) -> Result<u64, ApiError> {
    Ok(ch
        .query(&format!(
            "SELECT max(s) FROM (SELECT max(stream_seq) AS s FROM {CLUSTER_LOG} \
             UNION ALL SELECT max(stream_seq) AS s FROM {CLUSTER_MEMBERS} \
             UNION ALL SELECT max(stream_seq) AS s FROM {NODE_LABELS})"
        ))
        .fetch_one()
        .await?)
}

/// What every node's clusters and labels are folded from ([`Rows::fold`]): live clusters as
/// (id, name), memberships as (cluster id, node id), and the rows of `node_labels`.
pub struct Rows {
    clusters: Vec<(String, String)>,
    members: Vec<(String, String)>,
    labels: Vec<LabelsRow>,
}

/// Reads [`Rows`]: three reads asked at once, each on one ClickHouse thread (a reload runs
/// behind the requests). Labels are read as stored and combined here: cheaper than 18.16's
/// `GROUP BY` over them.
pub async fn rows(ch: &Client) -> Result<Rows, ApiError> {
    let one_thread = |sql: String| ch.query(&sql).with_setting("max_threads", "1");
    let (clusters, members, labels) = tokio::try_join!(
        one_thread(format!("SELECT cluster_id, name FROM {CLUSTERS}"))
            .fetch_all::<(String, String)>(),
        one_thread(format!("SELECT cluster_id, node_id FROM {MEMBERS}"))
            .fetch_all::<(String, String)>(),
        one_thread(format!("SELECT ?fields FROM {NODE_LABELS} FINAL")).fetch_all::<LabelsRow>(),
    )?;
    Ok(Rows {
        clusters,
        members,
        labels,
    })
}

/// [`Rows`] as they were at `at_ms`: folded from the logs (`cluster_log`, `label_log`) over the
/// events that occurred at or before it.
pub async fn rows_at(ch: &Client, at_ms: u64) -> Result<Rows, ApiError> {
    let (clusters, members, labels) = tokio::try_join!(
        ch.query(&format!(
            "SELECT cluster_id, name FROM (SELECT cluster_id, \
                 argMaxIf(name, stream_seq, kind IN ('ClusterCreated', 'ClusterRenamed')) AS name, \
                 max(kind = 'ClusterDeleted') AS deleted, max(kind = 'ClusterCreated') AS created \
             FROM {CLUSTER_LOG} \
             WHERE kind IN ('ClusterCreated', 'ClusterRenamed', 'ClusterDeleted') AND ts_ms <= ? \
             GROUP BY cluster_id HAVING created = 1 AND deleted = 0)"
        ))
        .bind(at_ms)
        .fetch_all::<(String, String)>(),
        ch.query(&format!(
            "SELECT cluster_id, node_id FROM (SELECT cluster_id, node_id, \
                 argMax(kind, stream_seq) AS last FROM {CLUSTER_LOG} \
             WHERE kind IN ('NodeAssignedToCluster', 'NodeUnassignedFromCluster') AND ts_ms <= ? \
             GROUP BY cluster_id, node_id) WHERE last = 'NodeAssignedToCluster'"
        ))
        .bind(at_ms)
        .fetch_all::<(String, String)>(),
        ch.query(&format!(
            "SELECT node_id, source, k AS keys, l AS labels, at AS changed_at_ms, \
                 by AS requested_by, seq AS stream_seq \
             FROM (SELECT node_id, source, argMax(keys, stream_seq) AS k, \
                 argMax(labels, stream_seq) AS l, max(changed_at_ms) AS at, \
                 argMax(requested_by, stream_seq) AS by, max(stream_seq) AS seq \
             FROM {LABEL_LOG} WHERE changed_at_ms <= ? GROUP BY node_id, source)"
        ))
        .bind(at_ms)
        .fetch_all::<LabelsRow>(),
    )?;
    Ok(Rows {
        clusters,
        members,
        labels,
    })
}

impl Rows {
    /// Every live cluster by name, and the clusters (by name) and effective labels of every
    /// node with either.
    pub fn fold(self, version: u64) -> TagSet {
        let mut clusters: Vec<ClusterRef> = self
            .clusters
            .into_iter()
            .map(|(cluster_id, name)| ClusterRef { cluster_id, name })
            .collect();
        clusters.sort_by(by_name);
        let names: HashMap<&str, &ClusterRef> = clusters
            .iter()
            .map(|c| (c.cluster_id.as_str(), c))
            .collect();
        let mut nodes: HashMap<String, Tags> = HashMap::new();
        for (cluster_id, node_id) in self.members {
            // A cluster deleted between the reads: its memberships are gone too.
            if let Some(c) = names.get(cluster_id.as_str()) {
                nodes
                    .entry(node_id)
                    .or_default()
                    .clusters
                    .push((*c).clone());
            }
        }
        // Per node: (operator labels, operator keys, agent labels).
        let mut sets: HashMap<String, [Vec<String>; 3]> = HashMap::new();
        for l in self.labels {
            let set = sets.entry(l.node_id).or_default();
            match l.source.as_str() {
                "operator" => (set[0], set[1]) = (l.labels, l.keys),
                "agent" => set[2] = l.labels,
                _ => {}
            }
        }
        for (node, [op, op_keys, ag]) in sets {
            let labels = effective_labels(&op, &op_keys, &ag);
            if !labels.is_empty() {
                nodes.entry(node).or_default().labels = labels;
            }
        }
        let nodes = nodes
            .into_iter()
            .map(|(node, mut tags)| {
                tags.clusters.sort_by(by_name);
                (node, Arc::new(tags))
            })
            .collect();
        TagSet {
            version,
            clusters,
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_labels_override_the_agents_by_key() {
        let op = ["rack=r9".to_owned()];
        let keys = ["rack".to_owned()];
        let agent = ["gpu=h100".to_owned(), "rack=r1".to_owned()];
        assert_eq!(
            effective_labels(&op, &keys, &agent),
            ["gpu=h100", "rack=r9"]
        );
        assert_eq!(effective_labels(&[], &[], &agent), ["gpu=h100", "rack=r1"]);
    }
}
