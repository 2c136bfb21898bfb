//! The clusters' handlers (`/api/v1/clusters/...`): they only translate HTTP to
//! [`crate::clusters`], and describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath};
use super::guard::Caller;
use super::params::{ClusterNodePath, ClusterPath};
use crate::AppState;
use crate::clusters;
use crate::dto::Accepted;
use crate::dto::clusters::{ClusterDetail, ClusterList, CreateCluster, RenameCluster};
use crate::error::ApiError;

/// Every cluster with its node count.
#[utoipa::path(
    get,
    path = "/api/v1/clusters",
    tag = "clusters",
    responses((status = 200, body = ClusterList)),
)]
pub(super) async fn list_clusters(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::list(&state).await?))
}

/// One cluster and its nodes.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{id}",
    tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = ClusterDetail)),
)]
pub(super) async fn cluster_detail(
    State(state): State<AppState>,
    ApiPath(ClusterPath { id }): ApiPath<ClusterPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::detail(&state, &id).await?))
}

/// Creates a cluster.
#[utoipa::path(
    post,
    path = "/api/v1/clusters",
    tag = "clusters",
    request_body = CreateCluster,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn create_cluster(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<CreateCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::create(&state, req, &who.who()).await?))
}

/// Renames a cluster.
#[utoipa::path(
    patch,
    path = "/api/v1/clusters/{id}",
    tag = "clusters",
    params(ClusterPath),
    request_body = RenameCluster,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn rename_cluster(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(ClusterPath { id }): ApiPath<ClusterPath>,
    ApiJson(req): ApiJson<RenameCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::rename(&state, &id, req, &who.who()).await?))
}

/// Deletes a cluster (its nodes stay).
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{id}",
    tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn delete_cluster(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(ClusterPath { id }): ApiPath<ClusterPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::delete(&state, &id, &who.who()).await?))
}

/// Adds a node to a cluster.
#[utoipa::path(
    put,
    path = "/api/v1/clusters/{id}/nodes/{node}",
    tag = "clusters",
    params(ClusterNodePath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn assign_node(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(ClusterNodePath { id, node }): ApiPath<ClusterNodePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::assign(&state, &id, &node, true, &who.who()).await?,
    ))
}

/// Removes a node from a cluster.
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{id}/nodes/{node}",
    tag = "clusters",
    params(ClusterNodePath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn unassign_node(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(ClusterNodePath { id, node }): ApiPath<ClusterNodePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::assign(&state, &id, &node, false, &who.who()).await?,
    ))
}
