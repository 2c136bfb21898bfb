//! The router's error cases and empty-fleet answers through `router(state)` with
//! `tower::ServiceExt::oneshot`, over a fresh database on a real ClickHouse (started by the test
//! harness; no NATS, so health is degraded).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::fresh_database;
use tower::ServiceExt;

async fn call(app: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_and_unknown_things_404_with_a_json_code() {
    let ch = fresh_database().await;
    nerve_projections::ensure_tables(&ch).await.expect("tables");
    let state = nerve_api::AppState::new(
        nerve_platform::clickhouse::client(&ch),
        None,
        Default::default(),
        Default::default(),
        Registry::new(),
    );
    let app = nerve_api::router(state);

    let cases = [
        (
            "/api/v1/nodes/no-such-node",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/nodes/no-such-node/metrics",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/api/v1/no/such/route", StatusCode::NOT_FOUND, "not_found"),
        (
            "/api/v1/nodes/bad.id",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?limit=100000",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?limit=ten",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?offset=-1",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?status=sleepy",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes?colour=red",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes/n1/metrics?from=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes/n1/metrics?from=200&to=100",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes/n1/metrics?step=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes/n1/metrics?step=soon",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/nodes/n1/metrics?from=0&to=100000000&step=1",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (uri, status, code) in cases {
        let (got, body) = call(&app, uri).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{uri}: {body}"
        );
    }

    // The happy paths answer on an empty fleet.
    let (status, body) = call(&app, "/api/v1/nodes?status=online&limit=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    // Health without NATS is degraded, and says why.
    let (status, body) = call(&app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["clickhouse"]["ok"], true);
    assert_eq!(body["nats"]["ok"], false);
}
