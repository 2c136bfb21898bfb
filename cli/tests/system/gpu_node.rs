//! A real H100 node: the inventory and heartbeat `nerve probe` read on a GPU machine
//! (`agent/tests/fixtures/gpu/captured/`, see `agent/GPU.md`) → JetStream → projectors →
//! ClickHouse → the node detail, the node list, the fleet summary and the metrics series.

use axum::http::{Method, StatusCode};
use nerve_agent::probe::Probe;
use nerve_platform::testkit::eventually;
use serde_json::Value;

use crate::support::{DEADLINE, Env, call, get_ok, publish_heartbeat, publish_inventory};

const UUID: &str = "GPU-811cddd9-70c6-f30a-dbcf-b99b7a07bd26";

fn captured() -> Probe {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../agent/tests/fixtures/gpu/captured/probe-busy.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_h100_nodes_events_show_in_every_view() {
    let env = Env::start().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let _projectors = env.spawn_projectors(&nerve_platform::metrics::Registry::new(), &cancel);
    let app = env.app().await;
    // As captured, but recent (the node is judged online) and under a node id of its own.
    let Probe {
        mut inventory,
        mut heartbeat,
        ..
    } = captured();
    let now = nerve_platform::now_ms();
    for envelope in [&mut inventory.envelope, &mut heartbeat.envelope] {
        envelope.node_id = "h100-a".into();
        envelope.occurred_at_ms = now;
    }
    publish_inventory(&env.js, &inventory).await;
    publish_heartbeat(&env.js, &heartbeat).await;

    let detail = eventually(
        DEADLINE,
        "the H100 node's inventory and heartbeat",
        || async {
            let (status, body) = call(&app, Method::GET, "/api/v1/nodes/h100-a", Value::Null).await;
            (status == StatusCode::OK && !body["inventory"].is_null() && !body["latest"].is_null())
                .then_some(body)
        },
    )
    .await;
    let gpu = &detail["inventory"]["gpus"][0];
    assert_eq!(gpu["uuid"], UUID, "{detail:#}");
    assert_eq!(gpu["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(gpu["memory_total_bytes"], 85_520_809_984_u64);
    assert_eq!(gpu["driver_version"], "580.159.04");
    assert_eq!(gpu["compute_capability"], "9.0");
    assert_eq!(gpu["power_limit_w"], 700.0);
    assert_eq!(detail["inventory"]["cpu"]["logical_cores"], 16);

    let sample = &detail["gpus"][0];
    assert_eq!(detail["gpu_health"], "ok", "{detail:#}");
    assert_eq!(sample["uuid"], UUID, "{detail:#}");
    assert_eq!(sample["util_pct"], 100.0);
    assert_eq!(sample["temperature_c"], 56.0);
    let power = sample["power_w"].as_f64().expect("power_w");
    assert!((power - 699.408).abs() < 1e-3, "{power}");
    assert_eq!(
        sample["throttle_reason_names"],
        serde_json::json!(["sw_power_cap"])
    );
    assert_eq!(sample["remapped_rows_pending"], false);
    assert_eq!(sample["health_reasons"], serde_json::json!([]));
    assert_eq!(detail["latest"]["gpu_count"], 1);
    assert_eq!(detail["latest"]["gpu_util_pct_avg"], 100.0);

    let page = get_ok(&app, "/api/v1/nodes?q=h100-a").await;
    let row = &page["nodes"][0];
    assert_eq!(
        (&row["id"], &row["gpu_count"], &row["gpu_health"]),
        (&Value::from("h100-a"), &Value::from(1), &Value::from("ok")),
        "{page:#}"
    );
    let fleet = get_ok(&app, "/api/v1/fleet/summary").await;
    assert_eq!(fleet["gpus"], 1, "{fleet:#}");
    assert_eq!(fleet["gpu_histogram"][9], 1, "{fleet:#}");

    // `heartbeats` is written right after `node_state` (last, by design): wait for it too.
    let points = eventually(DEADLINE, "the heartbeat in the metrics series", || async {
        let series = get_ok(&app, "/api/v1/nodes/h100-a/metrics").await;
        let points = series["points"].as_array().cloned().unwrap_or_default();
        (!points.is_empty()).then_some(points)
    })
    .await;
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0]["gpu_util_pct"], 100.0);
    cancel.cancel();
}
