//! The API's own metrics: every request timed by its route (the matched pattern, never the raw
//! path), method and status class (`nerve_api_request_duration_seconds`), and `GET /metrics`,
//! which serves this process's registry.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub(super) async fn timed(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state
        .metrics()
        .histogram(
            "nerve_api_request_duration_seconds",
            "API requests from arrival to the response's head, by route, method and status class.",
            &[
                ("route", route),
                ("method", method.as_str()),
                ("status", class),
            ],
        )
        .observe(started.elapsed());
    response
}

/// This server's metrics, in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((
        status = 200,
        body = String,
        content_type = "application/openmetrics-text",
    )),
)]
pub(super) async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, nerve_platform::metrics::CONTENT_TYPE)],
        state.metrics().render(),
    )
}
