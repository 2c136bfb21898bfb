//! The router's error cases and empty-fleet answers through `router(state)` with
//! `tower::ServiceExt::oneshot`, over a fresh database on a real ClickHouse and a private NATS
//! (both started by the test harness), called with an admin token; and health without NATS.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use nerve_api::dto::auth::{CreateToken, Identity, Role};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::{TestNats, fresh_database};
use tower::ServiceExt;

async fn call(app: &axum::Router, token: &str, uri: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
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
    let nats = TestNats::start();
    let client = async_nats::connect(nats.url()).await.expect("nats");
    nerve_ingest::ensure_streams(
        &async_nats::jetstream::new(client.clone()),
        &Default::default(),
    )
    .await
    .expect("streams");
    let state = nerve_api::AppState::new(
        nerve_platform::clickhouse::client(&ch),
        Some(client),
        Default::default(),
        Default::default(),
        Registry::new(),
    );
    let by = Identity {
        token_id: "system".into(),
        name: "router-test".into(),
        role: Role::Admin,
    };
    let request = CreateToken {
        name: "reader".into(),
        role: "viewer".into(),
        ttl_secs: None,
    };
    let token = nerve_api::auth::tokens::issue(&state, &by, request)
        .await
        .expect("token")
        .token;
    state.keyring().ready().await;
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
        let (got, body) = call(&app, &token, uri).await;
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
    let (status, body) = call(&app, &token, "/api/v1/nodes?status=online&limit=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    // Health without NATS is degraded, and says why (health needs no token).
    let without_nats = nerve_api::router(nerve_api::AppState::new(
        nerve_platform::clickhouse::client(&ch),
        None,
        Default::default(),
        Default::default(),
        Registry::new(),
    ));
    let (status, body) = call(&without_nats, "", "/api/v1/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["clickhouse"]["ok"], true);
    assert_eq!(body["nats"]["ok"], false);
}
