//! The node list and fleet summary over real projections: filters, sorts, pages and counts from
//! the in-memory fleet snapshot, and how fresh that snapshot is (`api.fleet_snapshot_max_age_ms`).

use std::time::Duration;

use axum::http::Method;
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Env, call, get_ok, heartbeat, inventory, publish_heartbeat, publish_inventory,
    publish_went_offline,
};

/// `(node, hostname, cpu %)`: n3 is judged offline.
const FLEET: [(&str, &str, f32); 5] = [
    ("n1", "GPU-a1", 50.0),
    ("n2", "gpu-b2", 90.0),
    ("n3", "cpu-c3", 50.0),
    ("n4", "gpu-d4", 10.0),
    ("n5", "gpu-e5", 70.0),
];

async fn publish_node(js: &async_nats::jetstream::Context, i: usize) {
    let (id, host, cpu) = FLEET[i];
    let now = nerve_platform::now_ms();
    let mut hb = heartbeat(id, now - 1_000 * i as i64, 1);
    hb.cpu_pct = cpu;
    publish_heartbeat(js, &hb).await;
    publish_inventory(js, &inventory(id, host, now)).await;
}

fn ids(page: &Value) -> Vec<&str> {
    page["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_list_filters_sorts_and_pages_a_fresh_snapshot() {
    let env = Env::start().await;
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let js = env.js.clone();
    for i in 0..FLEET.len() {
        publish_node(&js, i).await;
    }
    publish_went_offline(&js, "n3", nerve_platform::now_ms() - 60_000).await;
    eventually(DEADLINE, "five nodes, one offline, all named", || async {
        let named = env
            .count("SELECT count() FROM inventory FINAL WHERE hostname != ''")
            .await;
        let offline = env.count("SELECT count() FROM node_liveness FINAL").await;
        let nodes = env.count("SELECT count() FROM node_state FINAL").await;
        (named == 5 && offline == 1 && nodes == 5).then_some(())
    })
    .await;

    // Max age 0 (the test config): every request sees what was stored before it.
    let app = env.app().await;
    let all = get_ok(&app, "/api/v1/nodes?limit=2").await;
    assert_eq!(ids(&all), ["n1", "n2"]);
    assert_eq!(all["total"], 5);
    assert_eq!(all["nodes"][0]["hostname"], "GPU-a1");
    let cases = [
        ("/api/v1/nodes?offset=4", vec!["n5"]),
        (
            "/api/v1/nodes?order=desc&limit=2&offset=1",
            vec!["n4", "n3"],
        ),
        (
            "/api/v1/nodes?sort=cpu&order=desc",
            vec!["n2", "n5", "n3", "n1", "n4"],
        ),
        (
            "/api/v1/nodes?sort=cpu&order=desc&offset=2&limit=2",
            vec!["n3", "n1"],
        ),
        ("/api/v1/nodes?sort=cpu", vec!["n4", "n1", "n3", "n5", "n2"]),
        ("/api/v1/nodes?sort=status&order=desc&limit=1", vec!["n3"]),
        (
            "/api/v1/nodes?sort=hostname",
            vec!["n1", "n3", "n2", "n4", "n5"],
        ),
        ("/api/v1/nodes?sort=last_seen&limit=1", vec!["n5"]),
        ("/api/v1/nodes?q=gpu-", vec!["n1", "n2", "n4", "n5"]),
        ("/api/v1/nodes?q=N4", vec!["n4"]),
        ("/api/v1/nodes?status=offline", vec!["n3"]),
        (
            "/api/v1/nodes?status=online&q=gpu&sort=cpu&limit=2",
            vec!["n4", "n1"],
        ),
    ];
    for (uri, want) in cases {
        assert_eq!(ids(&get_ok(&app, uri).await), want, "{uri}");
    }
    let page = get_ok(&app, "/api/v1/nodes?status=online&q=gpu&limit=1").await;
    assert_eq!(page["total"], 4, "the total counts the whole selection");

    // A label filter is read from ClickHouse with the request, then applied to the snapshot.
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/nodes/n2/labels",
        json!({"labels": ["rack=r7"]}),
    )
    .await;
    assert!(status.is_success(), "{body}");
    eventually(DEADLINE, "the label filter", || async {
        let page = get_ok(&app, "/api/v1/nodes?label=rack%3Dr7").await;
        (ids(&page) == ["n2"]).then_some(())
    })
    .await;

    let summary = get_ok(&app, "/api/v1/fleet/summary").await;
    assert_eq!(
        (&summary["total"], &summary["online"], &summary["offline"]),
        (&json!(5), &json!(4), &json!(1))
    );
    // Online nodes by CPU tenth: 10 % → 1, 50 % → 5, 70 % → 7, 90 % → 9.
    assert_eq!(
        summary["cpu_histogram"],
        json!([0, 1, 0, 0, 0, 1, 0, 1, 0, 1])
    );
    assert_eq!(summary["mem_histogram"][2], 4, "2 of 8 GiB used: 25 %");
    assert_eq!(summary["attention"][0]["id"], "n3");

    // With a long max age, requests share one snapshot: a node stored after it was taken is
    // not listed until the snapshot is reloaded.
    let mut cached = env.config.api.clone();
    cached.fleet_snapshot_max_age_ms = 3_600_000;
    let cached_metrics = nerve_platform::metrics::Registry::new();
    let cached_app = env.app_with(cached, cached_metrics.clone()).await;
    assert_eq!(get_ok(&cached_app, "/api/v1/nodes").await["total"], 5);
    let late = heartbeat("n6", nerve_platform::now_ms(), 1);
    publish_heartbeat(&js, &late).await;
    eventually(DEADLINE, "n6 stored", || async {
        (env.count("SELECT count() FROM node_state WHERE node_id = 'n6'")
            .await
            > 0)
        .then_some(())
    })
    .await;
    assert_eq!(get_ok(&app, "/api/v1/nodes").await["total"], 6, "max age 0");
    assert_eq!(
        get_ok(&cached_app, "/api/v1/nodes").await["total"],
        5,
        "cached"
    );
    assert_eq!(
        get_ok(&cached_app, "/api/v1/fleet/summary").await["total"],
        5
    );
    assert!(
        cached_metrics
            .render()
            .contains("nerve_api_fleet_snapshot_loads_total 1"),
        "{}",
        cached_metrics.render()
    );

    // A short max age: the snapshot is reloaded (behind the requests, or before one once it is
    // too old), so the new node shows up without any request reading ClickHouse itself.
    let mut short = env.config.api.clone();
    short.fleet_snapshot_max_age_ms = 200;
    let short_app = env
        .app_with(short, nerve_platform::metrics::Registry::new())
        .await;
    assert_eq!(get_ok(&short_app, "/api/v1/nodes").await["total"], 6);
    publish_heartbeat(&js, &heartbeat("n7", nerve_platform::now_ms(), 1)).await;
    eventually(
        Duration::from_secs(30),
        "n7 listed after a reload",
        || async { (get_ok(&short_app, "/api/v1/nodes").await["total"] == 7).then_some(()) },
    )
    .await;
}
