//! The fleet at a past time: inventory, labels, cluster membership, status, alerts and metrics
//! changed at known times (events published with those times, folded by the real projectors);
//! `GET /api/v1/nodes/{id}?at=T` and `GET /api/v1/fleet/summary?at=T` at several T answer
//! exactly the state at T, to the millisecond, and without `at` the state now.

use nerve_platform::testkit::eventually;
use nerve_schemas::control::{
    ClusterCreated, ClusterRenamed, Label, NodeAssignedToCluster, NodeLabelsSet,
    NodeUnassignedFromCluster,
};
use nerve_schemas::{AlertFired, AlertResolved, Envelope, subjects};
use serde_json::Value;

use crate::support::{
    DEADLINE, Env, call, get_ok, heartbeat, inventory, publish_event, publish_heartbeat,
    publish_inventory,
};

const MIN: i64 = 60_000;

fn at(ms: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
    )
    .to_string()
}

fn labels(v: &Value) -> Vec<String> {
    serde_json::from_value(v["labels"].clone()).expect("labels")
}

fn clusters(v: &Value) -> Vec<String> {
    v["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_fleet_answer_exactly_as_they_were_at_each_time() {
    let env = Env::start().await;
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let js = &env.js;

    // Two hours ago, 123 ms past a second, so no boundary falls on a whole second.
    let b = nerve_platform::now_ms() / 1000 * 1000 - 120 * MIN + 123;
    let (a, z) = ("pit-a", "pit-b");
    publish_inventory(js, &inventory(a, "alpha-1", b)).await;
    publish_inventory(js, &inventory(z, "beta", b)).await;
    // a beats every 10 s for 40 min, busier from minute 20; z for 25 min, then goes offline.
    let mut beats = 0;
    for i in 0..240i64 {
        let ts = b + i * 10_000;
        let mut hb = heartbeat(a, ts, i);
        hb.cpu_pct = if ts < b + 20 * MIN { 20.0 } else { 70.0 };
        publish_heartbeat(js, &hb).await;
        beats += 1;
        if ts < b + 25 * MIN {
            let mut hb = heartbeat(z, ts, i);
            hb.cpu_pct = 33.0;
            publish_heartbeat(js, &hb).await;
            beats += 1;
        }
    }
    let z_last = b + 149 * 10_000;
    let offline = nerve_schemas::NodeWentOffline(nerve_schemas::LivenessChange {
        envelope: Envelope::new::<nerve_schemas::NodeWentOffline>(z, b + 27 * MIN),
        last_heartbeat_at_ms: z_last,
        silent_for_ms: b + 27 * MIN - z_last,
        heartbeat_interval_secs: 10,
        missed_heartbeats: 12,
        previous_state: "suspect".into(),
        detector: "test".into(),
    });
    publish_event(js, subjects::liveness(z), &offline).await;

    let cluster = uuid::Uuid::now_v7().to_string();
    let by = "test".to_owned();
    let created = ClusterCreated {
        envelope: Envelope::new::<ClusterCreated>(&cluster, b + 5 * MIN),
        cluster_id: cluster.clone(),
        name: "train".into(),
        description: String::new(),
        requested_by: by.clone(),
    };
    publish_event(js, subjects::control_cluster(&cluster), &created).await;
    let assigned = NodeAssignedToCluster {
        envelope: Envelope::new::<NodeAssignedToCluster>(a, b + 10 * MIN),
        cluster_id: cluster.clone(),
        requested_by: by.clone(),
    };
    publish_event(js, subjects::control_node(a), &assigned).await;
    let set = |rack: &str, ts: i64| NodeLabelsSet {
        envelope: Envelope::new::<NodeLabelsSet>(a, ts),
        source: "operator".into(),
        labels: vec![Label {
            key: "rack".into(),
            value: rack.into(),
        }],
        requested_by: by.clone(),
    };
    publish_event(js, subjects::control_node(a), &set("r1", b + 10 * MIN)).await;
    let renamed = ClusterRenamed {
        envelope: Envelope::new::<ClusterRenamed>(&cluster, b + 15 * MIN),
        cluster_id: cluster.clone(),
        name: "train-2".into(),
        requested_by: by.clone(),
    };
    publish_event(js, subjects::control_cluster(&cluster), &renamed).await;
    publish_event(js, subjects::control_node(a), &set("r2", b + 20 * MIN)).await;
    publish_inventory(js, &inventory(a, "alpha-2", b + 20 * MIN)).await;
    let unassigned = NodeUnassignedFromCluster {
        envelope: Envelope::new::<NodeUnassignedFromCluster>(a, b + 30 * MIN),
        cluster_id: cluster.clone(),
        requested_by: by.clone(),
    };
    publish_event(js, subjects::control_node(a), &unassigned).await;

    let (alert, rule) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let fired = AlertFired {
        envelope: Envelope::new::<AlertFired>(a, b + 12 * MIN),
        alert_id: alert.clone(),
        rule_id: rule.clone(),
        rule_name: "hot".into(),
        severity: "warning".into(),
        value: 91.0,
        threshold: 90.0,
        summary: "cpu_pct 91 > 90".into(),
        pending_since_ms: b + 11 * MIN,
        silenced_by: String::new(),
    };
    publish_event(js, subjects::alert(&rule, a), &fired).await;
    let resolved = AlertResolved {
        envelope: Envelope::new::<AlertResolved>(a, b + 22 * MIN),
        alert_id: alert.clone(),
        rule_id: rule.clone(),
        rule_name: "hot".into(),
        severity: "warning".into(),
        threshold: 90.0,
        summary: "cpu_pct 91 > 90".into(),
        value: Some(50.0),
        reason: "recovered".into(),
        fired_at_ms: b + 12 * MIN,
        silenced_by: String::new(),
    };
    publish_event(js, subjects::alert(&rule, a), &resolved).await;

    // Everything folded: the append-only tables of each projection hold every event.
    let expected = [
        ("heartbeats", beats),
        ("inventory_log", 3),
        ("node_events", 1),
        ("cluster_log", 6),
        ("label_log", 2),
        ("alert_log", 2),
    ];
    for (table, n) in expected {
        eventually(DEADLINE, table, || async {
            (env.count(&format!("SELECT count() FROM {table}")).await >= n).then_some(())
        })
        .await;
    }

    let node = |t: i64| {
        let uri = format!("/api/v1/nodes/{a}?at={}", at(t));
        let app = app.clone();
        async move { get_ok(&app, &uri).await }
    };
    let summary = |t: i64| {
        let uri = format!("/api/v1/fleet/summary?at={}", at(t));
        let app = app.clone();
        async move { get_ok(&app, &uri).await }
    };

    // Before anything: unknown node, empty fleet.
    let (status, body) = call(
        &app,
        axum::http::Method::GET,
        &format!("/api/v1/nodes/{a}?at={}", at(b - 1)),
        Value::Null,
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::NOT_FOUND, "{body}");
    assert_eq!(summary(b - 1).await["total"], 0);

    // Minute 7: the first inventory, no cluster, no labels, quiet, both online.
    let n = node(b + 7 * MIN).await;
    assert_eq!(n["as_of"], at(b + 7 * MIN));
    assert_eq!(n["inventory"]["hostname"], "alpha-1");
    assert_eq!(n["status"], "online");
    assert!(clusters(&n).is_empty() && labels(&n).is_empty(), "{n}");
    assert_eq!(n["latest"]["cpu_pct"], 20.0);
    assert_eq!(n["latest"]["last_seen_ms"], b + 42 * 10_000);
    assert_eq!(n["alerts"].as_array().map(Vec::len), Some(0));
    let s = summary(b + 7 * MIN).await;
    assert_eq!(
        (s["total"].as_u64(), s["online"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(s["alerts_firing"], 0);

    // The alert fired at minute 12 exactly: a millisecond before it was not firing.
    assert_eq!(summary(b + 12 * MIN - 1).await["alerts_firing"], 0);
    let n = node(b + 12 * MIN).await;
    assert_eq!(clusters(&n), ["train"]);
    assert_eq!(labels(&n), ["rack=r1"]);
    assert_eq!(n["alerts"][0]["alert_id"], alert.as_str());
    assert_eq!(
        n["alerts"][0]["fired_at"],
        at(b + 12 * MIN).replace(".123", "")
    );
    assert_eq!(summary(b + 12 * MIN).await["alerts_firing"], 1);

    // Minute 21: new inventory and labels, renamed cluster, busier, still firing.
    let n = node(b + 21 * MIN).await;
    assert_eq!(n["inventory"]["hostname"], "alpha-2");
    assert_eq!(labels(&n), ["rack=r2"]);
    assert_eq!(clusters(&n), ["train-2"]);
    assert_eq!(n["latest"]["cpu_pct"], 70.0);
    assert_eq!(n["alerts"].as_array().map(Vec::len), Some(1));
    // Minute 23: resolved.
    assert_eq!(
        node(b + 23 * MIN).await["alerts"].as_array().map(Vec::len),
        Some(0)
    );

    // Minute 45: z offline since minute 27, its last heartbeat long before: shown for attention
    // with that last sample.
    let s = summary(b + 45 * MIN).await;
    assert_eq!(
        (s["online"].as_u64(), s["offline"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s["attention"][0]["id"], z);
    assert_eq!(s["attention"][0]["last_seen_ms"], z_last);
    assert_eq!(s["attention"][0]["cpu_pct"], 33.0);
    // Minute 28: z as the tracker judged it.
    let zn = get_ok(&app, &format!("/api/v1/nodes/{z}?at={}", at(b + 28 * MIN))).await;
    assert_eq!(zn["status"], "offline");
    assert_eq!(zn["status_since"], at(b + 27 * MIN).replace(".123", ""));
    assert_eq!(zn["latest"]["last_seen_ms"], z_last);
    // Minute 31: out of the cluster again.
    assert!(clusters(&node(b + 31 * MIN).await).is_empty());

    // Now: the current tables agree with the last state.
    let n = get_ok(&app, &format!("/api/v1/nodes/{a}")).await;
    assert_eq!(n["as_of"], Value::Null);
    assert_eq!(n["inventory"]["hostname"], "alpha-2");
    assert_eq!(labels(&n), ["rack=r2"]);
    assert!(clusters(&n).is_empty());

    // A time ahead, or not a time: 400.
    for bad in ["2999-01-01T00:00:00Z", "yesterday"] {
        let (status, body) = call(
            &app,
            axum::http::Method::GET,
            &format!("/api/v1/fleet/summary?at={bad}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{body}");
    }
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
