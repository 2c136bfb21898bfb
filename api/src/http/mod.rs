//! The HTTP edge: the router of `/api/v1` and `/metrics`, whose handlers only translate HTTP
//! to service calls ([`crate::fleet`], [`crate::tasks`], [`crate::clusters`],
//! [`crate::alerts`]); [`extract`] turns bad input into JSON 400s and [`error`] maps every
//! error to a status.

pub mod error;
pub mod extract;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tower_http::trace::TraceLayer;

use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::dto::alerts::{AlertListQuery, CreateSilence, SaveChannel, SaveRule};
use crate::dto::clusters::{CreateCluster, RenameCluster, SetLabels};
use crate::dto::fleet::{MetricsQuery, NodeListQuery};
use crate::dto::tasks::{CreateTask, TaskListQuery};
use crate::error::ApiError;
use crate::{alerts, clusters, fleet, tasks};
use extract::{ApiJson, ApiPath, ApiQuery};

/// The API router: `/api/v1/...` and the Prometheus `/metrics`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/health", get(health))
        .route("/fleet/summary", get(summary))
        .route("/nodes", get(list_nodes))
        .route("/nodes/{id}", get(node_detail))
        .route("/nodes/{id}/metrics", get(node_metrics))
        .route("/nodes/{id}/labels", put(set_labels))
        .route("/clusters", get(list_clusters).post(create_cluster))
        .route(
            "/clusters/{id}",
            get(cluster_detail)
                .patch(rename_cluster)
                .delete(delete_cluster),
        )
        .route(
            "/clusters/{id}/nodes/{node}",
            put(assign_node).delete(unassign_node),
        )
        .route("/channels", get(list_channels).post(create_channel))
        .route("/channels/{id}", axum::routing::delete(delete_channel))
        .route("/channels/{id}/test", post(test_channel))
        .route("/alerts", get(list_alerts))
        .route("/alerts/history", get(alert_history))
        .route("/alerts/rules", get(list_rules).post(create_rule))
        .route(
            "/alerts/rules/{id}",
            get(rule_detail).put(update_rule).delete(delete_rule),
        )
        .route("/silences", get(list_silences).post(create_silence))
        .route("/silences/{id}", axum::routing::delete(delete_silence))
        // Compatibility paths for clients of the CNET and older APIs.
        .route("/clusters/list", get(list_clusters))
        .route("/agents/list", get(list_nodes))
        .route("/alerts/list", get(list_alerts))
        .merge(task_routes())
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", v1)
        // Compatibility paths, onto the same service.
        .route("/api/discovery/nodes", get(list_nodes))
        .nest("/api", task_routes().fallback(not_found))
        .route("/metrics", get(prometheus))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let health = fleet::health(&state).await;
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

async fn summary(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(fleet::summary(&state).await?))
}

async fn list_nodes(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<NodeListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(fleet::list_nodes(&state, query).await?))
}

async fn node_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(fleet::node_detail(&state, &id).await?))
}

async fn node_metrics(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<MetricsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        fleet::node_metrics(&state, &id, query, crate::time::now_ms()).await?,
    ))
}

/// `/tasks`: create, list, detail, per-node output, cancel.
fn task_routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", post(create_task).get(list_tasks))
        .route("/tasks/{id}", get(task_detail).delete(cancel_task))
        .route("/tasks/{id}/nodes/{node}/output", get(task_output))
        .route(
            "/tasks/{id}/nodes/{node}/output/live",
            get(task_output_live),
        )
}

async fn create_task(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(tasks::create(&state, req).await?),
    ))
}

async fn list_tasks(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::list(&state, query).await?))
}

async fn task_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::detail(&state, &id).await?))
}

async fn task_output(
    State(state): State<AppState>,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::output(&state, &id, &node).await?))
}

/// Server-sent events: `output` (JSON `{seq, stream, data}`) per chunk, then one `end` (JSON
/// `{state}`).
async fn task_output_live(
    State(state): State<AppState>,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = tasks::live_output(&state, &id, &node).await?;
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let event = match item {
            tasks::Live::Output { seq, stream, data } => Event::default()
                .event("output")
                .json_data(serde_json::json!({ "seq": seq, "stream": stream, "data": data })),
            tasks::Live::End { state } => Event::default()
                .event("end")
                .json_data(serde_json::json!({ "state": state })),
        };
        Some((event, rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn cancel_task(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(tasks::cancel(&state, &id, "api").await?),
    ))
}

async fn list_clusters(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::list(&state).await?))
}

async fn cluster_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::detail(&state, &id).await?))
}

async fn create_cluster(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::create(&state, req).await?),
    ))
}

async fn rename_cluster(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RenameCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::rename(&state, &id, req).await?),
    ))
}

async fn delete_cluster(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::delete(&state, &id).await?),
    ))
}

async fn assign_node(
    State(state): State<AppState>,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::assign(&state, &id, &node, true).await?),
    ))
}

async fn unassign_node(
    State(state): State<AppState>,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::assign(&state, &id, &node, false).await?),
    ))
}

async fn set_labels(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SetLabels>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(clusters::set_labels(&state, &id, req).await?),
    ))
}

async fn list_channels(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_channels(&state).await?))
}

async fn create_channel(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SaveChannel>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::create_channel(&state, req).await?),
    ))
}

async fn delete_channel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::delete_channel(&state, &id).await?),
    ))
}

async fn test_channel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::test_channel(&state, &id).await?))
}

async fn list_alerts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_alerts(&state, query).await?))
}

async fn alert_history(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::history(&state, query).await?))
}

async fn list_rules(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_rules(&state).await?))
}

async fn rule_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::rule(&state, &id).await?))
}

async fn create_rule(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::save(&state, None, req).await?),
    ))
}

async fn update_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::save(&state, Some(&id), req).await?),
    ))
}

async fn delete_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::delete_rule(&state, &id).await?),
    ))
}

async fn list_silences(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_silences(&state).await?))
}

async fn create_silence(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateSilence>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::create_silence(&state, req).await?),
    ))
}

async fn delete_silence(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(alerts::delete_silence(&state, &id).await?),
    ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route".into())
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
}

/// Serves `app` on `listener` until `cancel`, finishing in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
