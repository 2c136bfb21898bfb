//! Read your writes: with the real projector process running, every pair a script or the
//! console does back to back — create a channel then a rule naming it, a cluster then assign a
//! node to it, a rule then a silence of it, a task then read its ledger — works with no pause,
//! because a change is answered once its projection applied it; and a read can ask to see a
//! position first.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use nerve_platform::testkit::eventually;

use crate::support::{Api, DEADLINE, Env, heartbeat, publish_heartbeat};

/// Calls `uri`; the status, JSON body and the `Nerve-Position` / `Nerve-Applied` headers.
async fn call(
    app: &Api,
    method: Method,
    uri: &str,
    body: Value,
    min_position: Option<&str>,
) -> (StatusCode, Value, String, String) {
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", app.token))
        .header("content-type", "application/json");
    if let Some(p) = min_position {
        request = request.header("nerve-min-position", p);
    }
    let body = match body {
        Value::Null => axum::body::Body::empty(),
        b => axum::body::Body::from(b.to_string()),
    };
    let response = app
        .router
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("response");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (position, applied) = (header("nerve-position"), header("nerve-applied"));
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, position, applied)
}

async fn change(app: &Api, method: Method, uri: &str, body: Value) -> Value {
    let (status, body, position, applied) = call(app, method, uri, body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{uri}: {body}");
    assert!(
        position.starts_with("NERVE_"),
        "{uri}: position {position:?}"
    );
    assert_eq!(applied, "true", "{uri}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_then_use_pair_works_with_no_pause() {
    let env = Env::start().await;
    let _project = env.spawn_nerve(&["project"]);
    let app = env.app().await;
    publish_heartbeat(&env.js, &heartbeat("n-1", nerve_platform::now_ms(), 1)).await;
    // The projector process is up (it binds every consumer before it writes a row).
    eventually(DEADLINE, "the projectors running", || async {
        (env.count("SELECT count() FROM node_state").await > 0).then_some(())
    })
    .await;

    // Channel, then a rule naming it; the rule, then a silence of it.
    let hook = json!({"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/h"});
    change(&app, Method::POST, "/api/v1/channels", hook).await;
    let rule = json!({"name": "hot", "kind": "threshold", "metric": "cpu_pct", "aggregate": "avg",
        "op": ">", "threshold": 99.0, "window_secs": 60, "severity": "warning", "channels": ["ops"]});
    change(&app, Method::POST, "/api/v1/alerts/rules", rule).await;
    let silence = json!({"rule": "hot", "duration": "1h", "reason": "maintenance"});
    change(&app, Method::POST, "/api/v1/silences", silence).await;

    // Cluster, then assign a node to it by name.
    change(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "train"}),
    )
    .await;
    change(
        &app,
        Method::PUT,
        "/api/v1/clusters/train/nodes/n-1",
        Value::Null,
    )
    .await;

    // Task, then its ledger.
    let task = json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": ["n-1"]}});
    let task = change(&app, Method::POST, "/api/v1/tasks", task).await;
    let id = task["task_id"].as_str().expect("task id");
    let (status, detail, _, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/tasks/{id}"),
        Value::Null,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");

    // A read asks to see a position: one that exists is waited for; a bad one is explained;
    // one far ahead is not there in time.
    let (_, _, position, _) = call(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "eval"}),
        None,
    )
    .await;
    let (status, list, _, _) = call(
        &app,
        Method::GET,
        "/api/v1/clusters",
        Value::Null,
        Some(&position),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["clusters"].as_array().map(Vec::len), Some(2), "{list}");
    let (status, err, _, _) = call(
        &app,
        Method::GET,
        "/api/v1/clusters?min_position=NERVE_CONTROL",
        Value::Null,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}
