//! The CNET agent's paths over a real fleet: `/api/health` (public), `/api/node` (this server),
//! `/api/resources` (capacity by liveness state) and `/api/resources/usage` (what the online
//! nodes use), from projected heartbeats and a liveness verdict.

use axum::http::{Method, StatusCode};
use nerve_platform::testkit::eventually;
use nerve_schemas::GpuSample;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Env, call, get_ok, heartbeat, publish_heartbeat, publish_went_offline,
};

fn gpu(index: i32, util: f32) -> GpuSample {
    GpuSample {
        index,
        uuid: format!("GPU-{index}"),
        util_pct: util,
        mem_total_bytes: 80 << 30,
        health: "ok".into(),
        ..GpuSample::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cnet_paths_answer_for_this_server_and_the_fleet() {
    let env = Env::start().await;
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let now = nerve_platform::now_ms();
    // Each node: 4 cores, 8 GiB memory (2 used), 100 GiB disk (10 used), 1000/500 B/s.
    let mut a = heartbeat("cnet-a", now, 1);
    a.cpu_pct = 50.0;
    a.gpus = vec![gpu(0, 100.0), gpu(1, 50.0)];
    let mut b = heartbeat("cnet-b", now, 1);
    b.cpu_pct = 25.0;
    let mut gone = heartbeat("cnet-gone", now - 120_000, 1);
    gone.cpu_pct = 100.0;
    gone.gpus = vec![gpu(0, 100.0)];
    for hb in [&a, &b, &gone] {
        publish_heartbeat(&env.js, hb).await;
    }
    publish_went_offline(&env.js, "cnet-gone", now - 120_000).await;
    eventually(DEADLINE, "three nodes, one offline", || async {
        let nodes = env.count("SELECT count() FROM node_state FINAL").await;
        let offline = env.count("SELECT count() FROM node_liveness FINAL").await;
        (nodes == 3 && offline == 1).then_some(())
    })
    .await;
    let app = env.app().await;

    let resources = get_ok(&app, "/api/resources").await;
    assert_eq!(
        resources["nodes"],
        json!({"total": 3, "online": 2, "suspect": 0, "offline": 1})
    );
    let (gib, disk) = (1u64 << 30, 100u64 << 30);
    assert_eq!(
        resources["total"],
        json!({"cpu_cores": 12, "memory_bytes": 24 * gib, "disk_bytes": 3 * disk, "gpus": 3})
    );
    assert_eq!(
        resources["online"],
        json!({"cpu_cores": 8, "memory_bytes": 16 * gib, "disk_bytes": 2 * disk, "gpus": 2})
    );

    // Only the online nodes' use: 2 + 1 cores of 8, 1.5 GPUs of 2.
    let usage = get_ok(&app, "/api/resources/usage").await;
    assert_eq!(usage["nodes"], 2);
    let close = |v: &Value, want: f64| (v.as_f64().expect("number") - want).abs() < 1e-6;
    assert!(close(&usage["cpu"]["used"], 3.0), "{usage}");
    assert!(close(&usage["cpu"]["total"], 8.0), "{usage}");
    assert!(close(&usage["cpu"]["used_pct"], 37.5), "{usage}");
    assert!(close(&usage["memory"]["used_pct"], 25.0), "{usage}");
    assert!(close(&usage["disk"]["used"], (20 * gib) as f64), "{usage}");
    assert!(close(&usage["gpu"]["used"], 1.5), "{usage}");
    assert!(close(&usage["gpu"]["used_pct"], 75.0), "{usage}");
    assert!(
        close(&usage["network"]["rx_bytes_per_sec"], 2000.0),
        "{usage}"
    );
    assert!(
        close(&usage["network"]["tx_bytes_per_sec"], 1000.0),
        "{usage}"
    );

    let node = get_ok(&app, "/api/node").await;
    assert_eq!(node["node_name"], nerve_platform::hostname());
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(node["roles"], json!(["api"]));
    assert!(
        node["node_id"]
            .as_str()
            .is_some_and(|id| id.ends_with(&format!("-{}", std::process::id()))),
        "{node}"
    );

    // Health is public, like /api/v1/health; the rest need a token.
    let anonymous = app.with_token("");
    let (status, health) = call(&anonymous, Method::GET, "/api/health", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["clickhouse"]["ok"], true);
    for uri in ["/api/node", "/api/resources", "/api/resources/usage"] {
        let (status, body) = call(&anonymous, Method::GET, uri, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_fleet_has_nothing_and_uses_nothing() {
    let env = Env::start().await;
    let app = env.app().await;
    let resources = get_ok(&app, "/api/resources").await;
    assert_eq!(resources["nodes"]["total"], 0);
    assert_eq!(resources["total"]["cpu_cores"], 0);
    let usage = get_ok(&app, "/api/resources/usage").await;
    assert_eq!(usage["nodes"], 0);
    assert_eq!(usage["cpu"]["used_pct"], 0.0);
}
