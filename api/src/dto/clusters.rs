//! Clusters and operator labels.

use serde::{Deserialize, Serialize};

/// A cluster: a named group of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub cluster_id: String,
    pub name: String,
    pub description: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Nodes assigned to it.
    pub nodes: u64,
}

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterList {
    pub clusters: Vec<Cluster>,
}

/// `GET /api/v1/clusters/{id}`: the cluster and its nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterDetail {
    pub cluster: Cluster,
    pub node_ids: Vec<String>,
}

/// `POST /api/v1/clusters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CreateCluster {
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub name: String,
    pub description: String,
}

/// `PATCH /api/v1/clusters/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RenameCluster {
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub name: String,
}

/// `PUT /api/v1/nodes/{id}/labels`: the operator's labels of a node (`key=value`), replacing
/// the operator's earlier set; an operator label overrides the agent's label of the same key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SetLabels {
    pub labels: Vec<String>,
}
