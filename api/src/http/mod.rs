//! The HTTP edge: the router of `/api/v1` and `/metrics`, whose handlers only translate HTTP
//! to service calls ([`crate::fleet`], [`crate::tasks`], [`crate::clusters`],
//! [`crate::alerts`], [`crate::auth::tokens`], [`crate::audit`]); [`ROUTES`] is the one table
//! of every route with the right it needs, enforced by [`guard`]; [`extract`] turns bad input
//! into JSON 400s and [`error`] maps every error to a status.

mod alerts;
pub mod applied;
mod auth;
mod clusters;
mod cnet;
pub mod error;
pub mod extract;
mod fleet;
pub mod guard;
mod install;
pub mod openapi;
mod params;
mod remediation;
mod tasks;
mod timed;

pub use install::render as install_script;

use axum::Router;
use axum::http::Method;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::dto::auth::Right;
use crate::error::ApiError;
use guard::Rule;

/// One route: its method (`ANY` for the catch-alls), what the policy says of it and the
/// handler that answers it (by name; the OpenAPI document finds compatibility paths' operations
/// by it).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub rule: Rule,
    pub handler: &'static str,
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
            handler: stringify!($handler),
        },)+];

        fn routed() -> Router<AppState> {
            Router::new()$(.route($path, routes!(@on $method $handler)))+
        }
    };
}

routes! {
    GET "/api/v1/health" => fleet::health, Public, 200;
    GET "/api/v1/openapi.json" => openapi::serve, Public, 200;
    GET "/metrics" => timed::prometheus, Public, 200;
    // The agent's installation: the script, the binary and its checksum.
    GET "/install.sh" => install::script, Public, 200;
    GET "/download/nerve" => install::download, Public, 200;
    GET "/download/nerve.sha256" => install::checksum, Public, 200;
    GET "/api/v1/fleet/summary" => fleet::summary, Read, 200;
    GET "/api/v1/nodes" => fleet::list_nodes, Read, 200;
    GET "/api/v1/nodes/{id}" => fleet::node_detail, Read, 200;
    GET "/api/v1/nodes/{id}/metrics" => fleet::node_metrics, Read, 200;
    PUT "/api/v1/nodes/{id}/labels" => fleet::set_labels, Operate, 202;
    PUT "/api/v1/nodes/{id}/maintenance" => fleet::set_maintenance, Operate, 202;
    GET "/api/v1/clusters" => clusters::list_clusters, Read, 200;
    POST "/api/v1/clusters" => clusters::create_cluster, Operate, 202;
    GET "/api/v1/clusters/{id}" => clusters::cluster_detail, Read, 200;
    PATCH "/api/v1/clusters/{id}" => clusters::rename_cluster, Operate, 202;
    DELETE "/api/v1/clusters/{id}" => clusters::delete_cluster, Operate, 202;
    PUT "/api/v1/clusters/{id}/nodes/{node}" => clusters::assign_node, Operate, 202;
    DELETE "/api/v1/clusters/{id}/nodes/{node}" => clusters::unassign_node, Operate, 202;
    GET "/api/v1/channels" => alerts::list_channels, Read, 200;
    POST "/api/v1/channels" => alerts::create_channel, Admin, 202;
    DELETE "/api/v1/channels/{id}" => alerts::delete_channel, Admin, 202;
    POST "/api/v1/channels/{id}/test" => alerts::test_channel, Admin, 200;
    GET "/api/v1/alerts" => alerts::list_alerts, Read, 200;
    GET "/api/v1/alerts/history" => alerts::alert_history, Read, 200;
    GET "/api/v1/alerts/rules" => alerts::list_rules, Read, 200;
    POST "/api/v1/alerts/rules" => alerts::create_rule, Admin, 202;
    GET "/api/v1/alerts/rules/{id}" => alerts::rule_detail, Read, 200;
    PUT "/api/v1/alerts/rules/{id}" => alerts::update_rule, Admin, 202;
    DELETE "/api/v1/alerts/rules/{id}" => alerts::delete_rule, Admin, 202;
    GET "/api/v1/silences" => alerts::list_silences, Read, 200;
    POST "/api/v1/silences" => alerts::create_silence, Operate, 202;
    DELETE "/api/v1/silences/{id}" => alerts::delete_silence, Operate, 202;
    GET "/api/v1/remediation/policies" => remediation::list_policies, Read, 200;
    POST "/api/v1/remediation/policies" => remediation::create_policy, Admin, 202;
    GET "/api/v1/remediation/policies/{id}" => remediation::policy_detail, Read, 200;
    PUT "/api/v1/remediation/policies/{id}" => remediation::update_policy, Admin, 202;
    DELETE "/api/v1/remediation/policies/{id}" => remediation::delete_policy, Admin, 202;
    GET "/api/v1/remediation/runs" => remediation::list_runs, Read, 200;
    GET "/api/v1/remediation/breaker" => remediation::breaker, Read, 200;
    POST "/api/v1/remediation/breaker/reset" => remediation::reset_breaker, Admin, 202;
    POST "/api/v1/tasks" => tasks::create_task, Operate, 202;
    GET "/api/v1/tasks" => tasks::list_tasks, Read, 200;
    GET "/api/v1/tasks/{id}" => tasks::task_detail, Read, 200;
    DELETE "/api/v1/tasks/{id}" => tasks::cancel_task, Operate, 202;
    GET "/api/v1/tasks/{id}/nodes/{node}/output" => tasks::task_output, Read, 200;
    GET "/api/v1/tasks/{id}/nodes/{node}/output/live" => tasks::task_output_live, Read, 200;
    GET "/api/v1/me" => auth::me, Read, 200;
    GET "/api/v1/tokens" => auth::list_tokens, Admin, 200;
    POST "/api/v1/tokens" => auth::create_token, Admin, 201;
    POST "/api/v1/tokens/{id}/rotate" => auth::rotate_token, Admin, 201;
    DELETE "/api/v1/tokens/{id}" => auth::revoke_token, Admin, 200;
    GET "/api/v1/audit" => auth::list_audit, Read, 200;
    GET "/api/v1/enrollments" => auth::list_enrollments, Admin, 200;
    POST "/api/v1/enrollments" => auth::create_enrollment, Admin, 201;
    DELETE "/api/v1/enrollments/{id}" => auth::revoke_enrollment, Admin, 200;
    POST "/api/v1/enroll" => auth::enroll, Enroll, 201;
    POST "/api/v1/credentials/renew" => auth::renew_credentials, Public, 201;
    GET "/api/v1/credentials" => auth::list_credentials, Read, 200;
    DELETE "/api/v1/credentials/{node}" => auth::revoke_credentials, Admin, 200;
    // Compatibility paths for clients of the CNET and older APIs, onto the same services.
    GET "/api/v1/clusters/list" => clusters::list_clusters, Read, 200;
    GET "/api/v1/agents/list" => fleet::list_nodes, Read, 200;
    GET "/api/v1/alerts/list" => alerts::list_alerts, Read, 200;
    GET "/api/discovery/nodes" => fleet::list_nodes, Read, 200;
    POST "/api/tasks" => tasks::create_task, Operate, 202;
    GET "/api/tasks" => tasks::list_tasks, Read, 200;
    GET "/api/tasks/{id}" => tasks::task_detail, Read, 200;
    DELETE "/api/tasks/{id}" => tasks::cancel_task, Operate, 202;
    GET "/api/tasks/{id}/nodes/{node}/output" => tasks::task_output, Read, 200;
    GET "/api/tasks/{id}/nodes/{node}/output/live" => tasks::task_output_live, Read, 200;
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

/// A health check's answer: 200 when `healthy`, else 503, with `body` either way.
fn health_answer<T: serde::Serialize>(
    healthy: bool,
    body: T,
) -> (axum::http::StatusCode, axum::Json<T>) {
    let status = if healthy {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
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
