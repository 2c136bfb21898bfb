//! How other services select nodes and clusters from the control projection's tables
//! (`cluster_log`, `cluster_members`, `node_labels`): live clusters, memberships, each node's
//! effective labels, and [`NodeFilter`], the node condition a task's targets and an alert rule's
//! scope share. The SQL runs on ClickHouse 18.16 and current releases.

use clickhouse::Client;

/// Every live cluster with its name; ClickHouse 18.16 and current releases.
pub const CLUSTERS: &str = "(SELECT cluster_id, \
        argMaxIf(name, stream_seq, kind IN ('ClusterCreated', 'ClusterRenamed')) AS name, \
        anyIf(description, kind = 'ClusterCreated') AS description, \
        minIf(ts_ms, kind = 'ClusterCreated') AS created_at_ms, \
        max(kind = 'ClusterDeleted') AS deleted, \
        max(kind = 'ClusterCreated') AS created \
    FROM cluster_log \
    WHERE kind IN ('ClusterCreated', 'ClusterRenamed', 'ClusterDeleted') \
    GROUP BY cluster_id HAVING created = 1 AND deleted = 0)";

/// (cluster_id, node_id) of every current membership in a live cluster.
pub const MEMBERS: &str = "(SELECT cluster_id, node_id FROM cluster_members FINAL \
    WHERE assigned = 1 AND cluster_id IN (SELECT cluster_id FROM (SELECT cluster_id, \
        max(kind = 'ClusterDeleted') AS deleted, max(kind = 'ClusterCreated') AS created \
        FROM cluster_log GROUP BY cluster_id HAVING created = 1 AND deleted = 0)))";

/// (node_id, op, op_keys, ag): each node's operator labels, their keys, and agent labels.
/// A node has label `k=v` when the operator set it, or the agent did and the operator set no
/// `k` ([`LABEL_MATCH`]; 18.16's lambdas cannot reach other columns, so no merged array).
pub const LABELS: &str = "(SELECT node_id, anyIf(labels, source = 'operator') AS op, \
        anyIf(keys, source = 'operator') AS op_keys, anyIf(labels, source = 'agent') AS ag \
    FROM node_labels FINAL GROUP BY node_id)";

/// A node id condition for one label; binds `key=value`, `key=value`, `key` ([`label_binds`]).
pub fn label_match() -> String {
    format!(
        "node_id IN (SELECT node_id FROM {LABELS} \
         WHERE has(op, ?) OR (has(ag, ?) AND NOT has(op_keys, ?)))"
    )
}

/// What [`label_match`] binds for `label` (`key=value`, already validated).
pub fn label_binds(q: clickhouse::query::Query, label: &str) -> clickhouse::query::Query {
    let key = label.split_once('=').map_or(label, |(k, _)| k);
    q.bind(label).bind(label).bind(key)
}

/// Which nodes a task or an alert rule targets: all of these that are given must hold — one of
/// `node_ids`, a member of one of `clusters` (ids), every label (`key=value`, validated).
pub struct NodeFilter<'a> {
    pub node_ids: &'a [String],
    pub clusters: &'a [String],
    pub labels: &'a [String],
}

impl NodeFilter<'_> {
    /// The conditions on `node_id`; none when the filter selects every node.
    pub fn clauses(&self) -> Vec<String> {
        let mut clauses = Vec::new();
        if !self.node_ids.is_empty() {
            // A set, not `has(array, node_id)`: ClickHouse prunes by primary key with it.
            clauses.push("node_id IN (SELECT arrayJoin(?))".to_owned());
        }
        if !self.clusters.is_empty() {
            clauses.push(format!(
                "node_id IN (SELECT node_id FROM {MEMBERS} WHERE has(?, cluster_id))"
            ));
        }
        clauses.extend(self.labels.iter().map(|_| label_match()));
        clauses
    }

    /// Binds what [`NodeFilter::clauses`] need, in their order.
    pub fn bind(&self, mut q: clickhouse::query::Query) -> clickhouse::query::Query {
        if !self.node_ids.is_empty() {
            q = q.bind(self.node_ids);
        }
        if !self.clusters.is_empty() {
            q = q.bind(self.clusters);
        }
        for label in self.labels {
            q = label_binds(q, label);
        }
        q
    }
}

/// The ids of the live clusters named by id or name, in order; `Ok(Err(message))` names the
/// first key that is not one.
pub async fn cluster_ids(
    ch: &Client,
    keys: &[String],
) -> Result<Result<Vec<String>, String>, clickhouse::error::Error> {
    let mut ids = Vec::with_capacity(keys.len());
    for key in keys {
        if key.is_empty() || key.len() > 64 {
            return Ok(Err("a cluster is named by its id or name".into()));
        }
        let id: Option<String> = ch
            .query(&format!(
                "SELECT cluster_id FROM {CLUSTERS} WHERE cluster_id = ? OR name = ? \
                 ORDER BY name LIMIT 1"
            ))
            .bind(key)
            .bind(key)
            .fetch_optional()
            .await?;
        match id {
            Some(id) => ids.push(id),
            None => return Ok(Err(format!("unknown cluster {key:?}"))),
        }
    }
    Ok(Ok(ids))
}
