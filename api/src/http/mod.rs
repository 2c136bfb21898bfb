//! The HTTP edge: the router of `/api/v1` and `/metrics`, whose handlers only translate HTTP
//! to service calls ([`crate::fleet`], [`crate::tasks`], [`crate::clusters`],
//! [`crate::alerts`], [`crate::auth::tokens`], [`crate::audit`]); [`ROUTES`] is the one table
//! of every route with the right it needs, enforced by [`guard`]; [`extract`] turns bad input
//! into JSON 400s and [`error`] maps every error to a status.

pub mod applied;
mod cnet;
pub mod error;
pub mod extract;
pub mod guard;
mod install;
mod remediation;
mod timed;

pub use install::render as install_script;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use tower_http::trace::TraceLayer;

use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::dto::alerts::{AlertListQuery, CreateSilence, SaveChannel, SaveRule};
use crate::dto::auth::{AuditQuery, CreateEnrollment, CreateToken, Right, RotateToken};
use crate::dto::clusters::{CreateCluster, RenameCluster, SetLabels};
use crate::dto::fleet::{AsOfQuery, MetricsQuery, NodeListQuery, SetMaintenance};
use crate::dto::tasks::{CreateTask, TaskListQuery};
use crate::error::ApiError;
use crate::{alerts, audit, clusters, fleet, tasks};
use extract::{ApiJson, ApiPath, ApiQuery};
use guard::{Caller, Rule};

/// One route: its method (`ANY` for the catch-alls) and what the policy says of it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub rule: Rule,
}

/// Declares the routes once: [`ROUTES`] (the policy, read by the guard and the tests) and the
/// router built from the same lines, so no route exists without a right.
macro_rules! routes {
    (@on ANY $handler:path) => { axum::routing::any($handler) };
    (@on $method:ident $handler:path) => {
        axum::routing::on(axum::routing::MethodFilter::$method, $handler)
    };
    ($($method:ident $path:literal => $handler:path, $right:ident, $success:literal;)+) => {
        /// Every route with the right it needs and the status it answers on success (handlers
        /// answer 200; the guard gives a success this status). A route is added here or
        /// nowhere; the guard refuses anything not listed.
        pub const ROUTES: &[Route] = &[$(Route {
            method: stringify!($method),
            rule: Rule { route: $path, right: Right::$right, success: $success },
        },)+];

        fn routed() -> Router<AppState> {
            Router::new()$(.route($path, routes!(@on $method $handler)))+
        }
    };
}

routes! {
    GET "/api/v1/health" => health, Public, 200;
    GET "/metrics" => timed::prometheus, Public, 200;
    // The agent's installation: the script, the binary and its checksum.
    GET "/install.sh" => install::script, Public, 200;
    GET "/download/nerve" => install::download, Public, 200;
    GET "/download/nerve.sha256" => install::checksum, Public, 200;
    GET "/api/v1/fleet/summary" => summary, Read, 200;
    GET "/api/v1/nodes" => list_nodes, Read, 200;
    GET "/api/v1/nodes/{id}" => node_detail, Read, 200;
    GET "/api/v1/nodes/{id}/metrics" => node_metrics, Read, 200;
    PUT "/api/v1/nodes/{id}/labels" => set_labels, Operate, 202;
    PUT "/api/v1/nodes/{id}/maintenance" => set_maintenance, Operate, 202;
    GET "/api/v1/clusters" => list_clusters, Read, 200;
    POST "/api/v1/clusters" => create_cluster, Operate, 202;
    GET "/api/v1/clusters/{id}" => cluster_detail, Read, 200;
    PATCH "/api/v1/clusters/{id}" => rename_cluster, Operate, 202;
    DELETE "/api/v1/clusters/{id}" => delete_cluster, Operate, 202;
    PUT "/api/v1/clusters/{id}/nodes/{node}" => assign_node, Operate, 202;
    DELETE "/api/v1/clusters/{id}/nodes/{node}" => unassign_node, Operate, 202;
    GET "/api/v1/channels" => list_channels, Read, 200;
    POST "/api/v1/channels" => create_channel, Admin, 202;
    DELETE "/api/v1/channels/{id}" => delete_channel, Admin, 202;
    POST "/api/v1/channels/{id}/test" => test_channel, Admin, 200;
    GET "/api/v1/alerts" => list_alerts, Read, 200;
    GET "/api/v1/alerts/history" => alert_history, Read, 200;
    GET "/api/v1/alerts/rules" => list_rules, Read, 200;
    POST "/api/v1/alerts/rules" => create_rule, Admin, 202;
    GET "/api/v1/alerts/rules/{id}" => rule_detail, Read, 200;
    PUT "/api/v1/alerts/rules/{id}" => update_rule, Admin, 202;
    DELETE "/api/v1/alerts/rules/{id}" => delete_rule, Admin, 202;
    GET "/api/v1/silences" => list_silences, Read, 200;
    POST "/api/v1/silences" => create_silence, Operate, 202;
    DELETE "/api/v1/silences/{id}" => delete_silence, Operate, 202;
    GET "/api/v1/remediation/policies" => remediation::list_policies, Read, 200;
    POST "/api/v1/remediation/policies" => remediation::create_policy, Admin, 202;
    GET "/api/v1/remediation/policies/{id}" => remediation::policy_detail, Read, 200;
    PUT "/api/v1/remediation/policies/{id}" => remediation::update_policy, Admin, 202;
    DELETE "/api/v1/remediation/policies/{id}" => remediation::delete_policy, Admin, 202;
    GET "/api/v1/remediation/runs" => remediation::list_runs, Read, 200;
    GET "/api/v1/remediation/breaker" => remediation::breaker, Read, 200;
    POST "/api/v1/remediation/breaker/reset" => remediation::reset_breaker, Admin, 202;
    POST "/api/v1/tasks" => create_task, Operate, 202;
    GET "/api/v1/tasks" => list_tasks, Read, 200;
    GET "/api/v1/tasks/{id}" => task_detail, Read, 200;
    DELETE "/api/v1/tasks/{id}" => cancel_task, Operate, 202;
    GET "/api/v1/tasks/{id}/nodes/{node}/output" => task_output, Read, 200;
    GET "/api/v1/tasks/{id}/nodes/{node}/output/live" => task_output_live, Read, 200;
    GET "/api/v1/me" => me, Read, 200;
    GET "/api/v1/tokens" => list_tokens, Admin, 200;
    POST "/api/v1/tokens" => create_token, Admin, 201;
    POST "/api/v1/tokens/{id}/rotate" => rotate_token, Admin, 201;
    DELETE "/api/v1/tokens/{id}" => revoke_token, Admin, 200;
    GET "/api/v1/audit" => list_audit, Read, 200;
    GET "/api/v1/enrollments" => list_enrollments, Admin, 200;
    POST "/api/v1/enrollments" => create_enrollment, Admin, 201;
    DELETE "/api/v1/enrollments/{id}" => revoke_enrollment, Admin, 200;
    POST "/api/v1/enroll" => enroll, Enroll, 201;
    POST "/api/v1/credentials/renew" => renew_credentials, Public, 201;
    GET "/api/v1/credentials" => list_credentials, Read, 200;
    DELETE "/api/v1/credentials/{node}" => revoke_credentials, Admin, 200;
    // Compatibility paths for clients of the CNET and older APIs, onto the same services.
    GET "/api/v1/clusters/list" => list_clusters, Read, 200;
    GET "/api/v1/agents/list" => list_nodes, Read, 200;
    GET "/api/v1/alerts/list" => list_alerts, Read, 200;
    GET "/api/discovery/nodes" => list_nodes, Read, 200;
    POST "/api/tasks" => create_task, Operate, 202;
    GET "/api/tasks" => list_tasks, Read, 200;
    GET "/api/tasks/{id}" => task_detail, Read, 200;
    DELETE "/api/tasks/{id}" => cancel_task, Operate, 202;
    GET "/api/tasks/{id}/nodes/{node}/output" => task_output, Read, 200;
    GET "/api/tasks/{id}/nodes/{node}/output/live" => task_output_live, Read, 200;
    GET "/api/health" => cnet::health, Public, 200;
    GET "/api/node" => cnet::server_node, Read, 200;
    GET "/api/resources" => cnet::resources, Read, 200;
    GET "/api/resources/usage" => cnet::usage, Read, 200;
    // Anything else under /api: 404 to a caller with a token, 401 to one without.
    ANY "/api/v1/{*rest}" => not_found, Read, 404;
    ANY "/api/{*rest}" => not_found, Read, 404;
}

/// What the policy says of `method` on the matched `route`; `None`: no policy (refused).
pub fn rule_of(method: &Method, route: &str) -> Option<Rule> {
    ROUTES
        .iter()
        .find(|r| r.rule.route == route && (r.method == method.as_str() || r.method == "ANY"))
        .map(|r| r.rule)
}

/// The API router: `/api/v1/...`, its compatibility paths and the Prometheus `/metrics`, every
/// route behind the guard.
pub fn router(state: AppState) -> Router {
    routed()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::api_guard,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            timed::timed,
        ))
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

async fn summary(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let at = crate::at::parse(&query, crate::time::now_ms())?;
    Ok(Json(fleet::summary(&state, at).await?))
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
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let at = crate::at::parse(&query, crate::time::now_ms())?;
    Ok(Json(crate::node::node_detail(&state, &id, at).await?))
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

async fn create_task(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::create(&state, req, &who.who()).await?))
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
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(tasks::cancel(&state, &id, &who.who()).await?))
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
    who: Caller,
    ApiJson(req): ApiJson<CreateCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::create(&state, req, &who.who()).await?))
}

async fn rename_cluster(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RenameCluster>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::rename(&state, &id, req, &who.who()).await?))
}

async fn delete_cluster(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(clusters::delete(&state, &id, &who.who()).await?))
}

async fn assign_node(
    State(state): State<AppState>,
    who: Caller,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::assign(&state, &id, &node, true, &who.who()).await?,
    ))
}

async fn unassign_node(
    State(state): State<AppState>,
    who: Caller,
    ApiPath((id, node)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::assign(&state, &id, &node, false, &who.who()).await?,
    ))
}

async fn set_labels(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SetLabels>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::set_labels(&state, &id, req, &who.who()).await?,
    ))
}

async fn set_maintenance(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<impl IntoResponse, ApiError> {
    let done = crate::maintenance::set(&state, &id, req, &who.who()).await?;
    Ok(Json(done))
}

async fn list_channels(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_channels(&state).await?))
}

async fn create_channel(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<SaveChannel>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::create_channel(&state, req, &who.who()).await?))
}

async fn delete_channel(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_channel(&state, &id, &who.who()).await?))
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
    who: Caller,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::save(&state, None, req, &who.who()).await?))
}

async fn update_rule(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        alerts::save(&state, Some(&id), req, &who.who()).await?,
    ))
}

async fn delete_rule(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_rule(&state, &id, &who.who()).await?))
}

async fn list_silences(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_silences(&state).await?))
}

async fn create_silence(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<CreateSilence>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::create_silence(&state, req, &who.who()).await?))
}

async fn delete_silence(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_silence(&state, &id, &who.who()).await?))
}

async fn me(Caller(identity): Caller) -> impl IntoResponse {
    Json(identity)
}

async fn list_enrollments(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::enroll::list(&state))
}

async fn create_enrollment(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(req): ApiJson<CreateEnrollment>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::enroll::create(&state, &by.0, req).await?))
}

async fn revoke_enrollment(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    crate::auth::enroll::revoke_enrollment(&state, &by.0, &id).await?;
    Ok(Json(
        serde_json::json!({ "enrollment_id": id, "state": "revoked" }),
    ))
}

async fn enroll(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(proof): ApiJson<nerve_ingest::node_key::Proof>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::enroll::enroll(&state, &by.0, proof).await?,
    ))
}

/// Public on the policy: the node proves its key in the body, and the service audits the call.
async fn renew_credentials(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let draft = guard::draft_of(&mut parts, "/api/v1/credentials/renew").await;
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let proof: nerve_ingest::node_key::Proof = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let credentials = crate::auth::enroll::renew(&state, draft, proof).await?;
    Ok(Json(credentials).into_response())
}

async fn list_credentials(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::enroll::credentials(&state))
}

async fn revoke_credentials(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(node): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::enroll::revoke(&state, &by.0, &node).await?,
    ))
}

async fn list_tokens(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::tokens::list(&state))
}

async fn create_token(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::tokens::issue(&state, &by.0, req).await?))
}

async fn rotate_token(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RotateToken>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::tokens::rotate(&state, &by.0, &id, req).await?,
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::tokens::revoke(&state, &by.0, &id).await?))
}

async fn list_audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(audit::list(&state, query).await?))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route".into())
}

/// Serves `app` over HTTPS only (rustls; `cert` and `key` are PEM files) on `listener` until
/// `cancel`, finishing in-flight requests. A client speaking plain HTTP gets no answer.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<()> {
    // Once per process; a second install finds one already there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            cancel.cancelled().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        }
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

/// Serves `app` on `listener` until `cancel`, finishing in-flight requests. Each request
/// carries its peer address (for the audit trail).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await
}
