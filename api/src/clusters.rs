//! Clusters and labels: create, rename, delete clusters; assign and unassign nodes; set an
//! operator's labels on a node. Every change is a control event in the event log (who, when,
//! what); reads fold the projected tables (`nerve_projections::scope`).

use clickhouse::Row;
use nerve_projections::heartbeats::NODE_STATE;
use nerve_projections::scope::{CLUSTERS, MEMBERS};
use nerve_schemas::{
    ClusterCreated, ClusterDeleted, ClusterRenamed, Envelope, Event, NodeAssignedToCluster,
    NodeLabelsSet, NodeUnassignedFromCluster, subjects,
};
use serde::Deserialize;

use crate::AppState;
use crate::dto::Accepted;
use crate::dto::clusters::{
    Cluster, ClusterDetail, ClusterList, CreateCluster, RenameCluster, SetLabels,
};
use crate::error::ApiError;
use crate::time::rfc3339_ms;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

#[derive(Debug, Row, Deserialize)]
struct ClusterRow {
    cluster_id: String,
    name: String,
    description: String,
    created_at_ms: u64,
    nodes: u64,
}

impl ClusterRow {
    fn dto(self) -> Cluster {
        Cluster {
            created_at: rfc3339_ms(self.created_at_ms),
            cluster_id: self.cluster_id,
            name: self.name,
            description: self.description,
            nodes: self.nodes,
        }
    }
}

async fn clusters(state: &AppState, only: Option<&str>) -> Result<Vec<ClusterRow>, ApiError> {
    let filter = if only.is_some() {
        "WHERE c.cluster_id = ? OR c.name = ?"
    } else {
        ""
    };
    let sql = format!(
        "SELECT cluster_id, name, description, created_at_ms, count(m.node_id) AS nodes \
         FROM (SELECT cluster_id, name, description, created_at_ms FROM {CLUSTERS}) AS c \
         ANY LEFT JOIN (SELECT cluster_id, node_id FROM {MEMBERS}) AS m USING cluster_id \
         {filter} GROUP BY cluster_id, name, description, created_at_ms ORDER BY name"
    );
    let mut q = state.ch().query(&sql);
    if let Some(key) = only {
        q = q.bind(key).bind(key);
    }
    Ok(q.fetch_all().await?)
}

/// Every cluster, by name.
pub async fn list(state: &AppState) -> Result<ClusterList, ApiError> {
    Ok(ClusterList {
        clusters: clusters(state, None)
            .await?
            .into_iter()
            .map(ClusterRow::dto)
            .collect(),
    })
}

/// One cluster (by id or name) and its nodes.
pub async fn detail(state: &AppState, key: &str) -> Result<ClusterDetail, ApiError> {
    let cluster = find(state, key).await?;
    let node_ids: Vec<String> = state
        .ch()
        .query(&format!(
            "SELECT node_id FROM {MEMBERS} WHERE cluster_id = ? ORDER BY node_id"
        ))
        .bind(&cluster.cluster_id)
        .fetch_all()
        .await?;
    Ok(ClusterDetail { cluster, node_ids })
}

async fn find(state: &AppState, key: &str) -> Result<Cluster, ApiError> {
    if key.is_empty() || key.len() > 64 {
        return Err(bad("a cluster is named by its id or name"));
    }
    clusters(state, Some(key))
        .await?
        .into_iter()
        .next()
        .map(ClusterRow::dto)
        .ok_or_else(|| ApiError::NotFound(format!("cluster {key} not found")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(bad(format!("name {name:?}: 1 to 64 of [A-Za-z0-9._-]")));
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(bad("name: a UUID would be confused with a cluster id"));
    }
    Ok(())
}

async fn unique(state: &AppState, name: &str) -> Result<(), ApiError> {
    if clusters(state, Some(name))
        .await?
        .iter()
        .any(|c| c.name == name)
    {
        return Err(bad(format!("name: a cluster named {name:?} exists")));
    }
    Ok(())
}

async fn record<E: Event>(state: &AppState, subject: String, event: &E) -> Result<(), ApiError> {
    state.publish(subject, event).await
}

/// Creates a cluster on behalf of `by`.
pub async fn create(state: &AppState, req: CreateCluster, by: &str) -> Result<Accepted, ApiError> {
    check_name(&req.name)?;
    if req.description.len() > 1024 {
        return Err(bad("description: at most 1024 bytes"));
    }
    unique(state, &req.name).await?;
    let cluster_id = uuid::Uuid::now_v7().to_string();
    let event = ClusterCreated {
        envelope: Envelope::new::<ClusterCreated>(cluster_id.clone(), nerve_platform::now_ms()),
        cluster_id: cluster_id.clone(),
        name: req.name,
        description: req.description,
        requested_by: by.to_owned(),
    };
    record(state, subjects::control_cluster(&cluster_id), &event).await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: Some(cluster_id),
        id: None,
    })
}

/// Renames a cluster on behalf of `by`.
pub async fn rename(
    state: &AppState,
    key: &str,
    req: RenameCluster,
    by: &str,
) -> Result<Accepted, ApiError> {
    let cluster = find(state, key).await?;
    check_name(&req.name)?;
    if req.name != cluster.name {
        unique(state, &req.name).await?;
    }
    let id = cluster.cluster_id;
    let event = ClusterRenamed {
        envelope: Envelope::new::<ClusterRenamed>(id.clone(), nerve_platform::now_ms()),
        cluster_id: id.clone(),
        name: req.name,
        requested_by: by.to_owned(),
    };
    record(state, subjects::control_cluster(&id), &event).await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: Some(id),
        id: None,
    })
}

/// Deletes a cluster on behalf of `by` (its nodes simply stop being in it).
pub async fn delete(state: &AppState, key: &str, by: &str) -> Result<Accepted, ApiError> {
    let id = find(state, key).await?.cluster_id;
    let event = ClusterDeleted {
        envelope: Envelope::new::<ClusterDeleted>(id.clone(), nerve_platform::now_ms()),
        cluster_id: id.clone(),
        requested_by: by.to_owned(),
    };
    record(state, subjects::control_cluster(&id), &event).await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: Some(id),
        id: None,
    })
}

pub(crate) async fn check_node(state: &AppState, node: &str) -> Result<(), ApiError> {
    if !subjects::is_valid_node_id(node) {
        return Err(bad(format!("invalid node id {node:?}")));
    }
    let known: u64 = state
        .ch()
        .query(&format!(
            "SELECT count() FROM {NODE_STATE} WHERE node_id = ?"
        ))
        .bind(node)
        .fetch_one()
        .await?;
    if known == 0 {
        return Err(ApiError::NotFound(format!("node {node} not found")));
    }
    Ok(())
}

/// Puts a node in a cluster, or takes it out, on behalf of `by`.
pub async fn assign(
    state: &AppState,
    key: &str,
    node: &str,
    assigned: bool,
    by: &str,
) -> Result<Accepted, ApiError> {
    let id = find(state, key).await?.cluster_id;
    check_node(state, node).await?;
    let now = nerve_platform::now_ms();
    let subject = subjects::control_node(node);
    let event_id = if assigned {
        let e = NodeAssignedToCluster {
            envelope: Envelope::new::<NodeAssignedToCluster>(node, now),
            cluster_id: id.clone(),
            requested_by: by.to_owned(),
        };
        record(state, subject, &e).await?;
        e.envelope.event_id
    } else {
        let e = NodeUnassignedFromCluster {
            envelope: Envelope::new::<NodeUnassignedFromCluster>(node, now),
            cluster_id: id.clone(),
            requested_by: by.to_owned(),
        };
        record(state, subject, &e).await?;
        e.envelope.event_id
    };
    Ok(Accepted {
        event_id,
        cluster_id: Some(id),
        id: None,
    })
}

/// Replaces the operator's labels of a node, on behalf of `by`.
pub async fn set_labels(
    state: &AppState,
    node: &str,
    req: SetLabels,
    by: &str,
) -> Result<Accepted, ApiError> {
    check_node(state, node).await?;
    if req.labels.len() > 64 {
        return Err(bad("labels: at most 64"));
    }
    let labels = req
        .labels
        .iter()
        .map(|l| nerve_schemas::control::parse_label(l).map_err(|e| bad(format!("labels: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let event = NodeLabelsSet {
        envelope: Envelope::new::<NodeLabelsSet>(node, nerve_platform::now_ms()),
        source: "operator".into(),
        labels,
        requested_by: by.to_owned(),
    };
    record(state, subjects::control_node(node), &event).await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: None,
        id: None,
    })
}

/// The ids of the clusters named by id or name; an unknown one is a 400.
pub async fn resolve_clusters(state: &AppState, keys: &[String]) -> Result<Vec<String>, ApiError> {
    nerve_projections::scope::cluster_ids(state.ch(), keys)
        .await?
        .map_err(ApiError::BadRequest)
}
