//! Alerting end to end on real services: a threshold rule fires for simulated nodes crossing it
//! and resolves after one recovers; its webhook message arrives signed and is retried after a
//! 500; a silence mutes its node until the silence ends; a restarted evaluator keeps one open
//! alert per rule × node; an absence rule fires when a real agent stops and resolves when it
//! returns; every threshold metric (GPU ones over the hottest GPU) is computed by ClickHouse;
//! event rules fire on critical GPU XIDs and on a node's task failure rate; invalid
//! rules and silences are 400s naming every bad field, and a rule can be replaced; the built-in
//! `archive-lag` alert fires while the archive is behind a stream and resolves once it seals.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode};
use nerve_alerts::archive::Watch;
use nerve_ingest::TELEMETRY_STREAM;
use nerve_ingest::archive::{Archive, Sealing};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{Api, DEADLINE, Env, call, heartbeat, publish_heartbeat, sample, signal};

/// What the receiver saw: (signature header, JSON body).
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver on a free port that answers 500 to its first request and 200 after.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = s.clone();
            async move {
                let sig = headers
                    .get("x-nerve-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // The signature covers the exact bytes; checked here, before parsing.
                let valid = sig.as_deref()
                    == Some(nerve_alerts::notify::signature("hook-key", &body).as_str());
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut seen = seen.lock().expect("lock");
                seen.push((valid.then(|| "valid".to_owned()).or(sig), json));
                if seen.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (base, seen)
}

/// Runs an alert evaluator in this process (every 100 ms) until `cancel`.
async fn spawn_evaluator(env: &Env, metrics: &Registry, cancel: &CancellationToken) {
    spawn_evaluator_watching(env, None, metrics, cancel).await;
}

/// [`spawn_evaluator`] watching an archive.
async fn spawn_evaluator_watching(
    env: &Env,
    archive: Option<Watch>,
    metrics: &Registry,
    cancel: &CancellationToken,
) {
    let nats = async_nats::connect(env.nats.url()).await.expect("nats");
    let ctx = nerve_alerts::Context::new(env.ch.clone(), Some(nats), &env.config.alerts);
    let mut config = env.config.alerts.clone();
    config.eval_interval_ms = 100;
    let (metrics, cancel) = (metrics.clone(), cancel.clone());
    tokio::spawn(async move {
        nerve_alerts::run(ctx, config, archive, &metrics, cancel)
            .await
            .expect("evaluator")
    });
}

/// Evaluation rounds done by the evaluator reporting to `metrics`.
fn rounds(metrics: &Registry) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("nerve_alerts_evaluations_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn alerts(app: &Api, query: &str) -> Vec<Value> {
    let (status, list) = call(
        app,
        Method::GET,
        &format!("/api/v1/alerts{query}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["alerts"].as_array().cloned().unwrap_or_default()
}

fn listed_nodes(body: &Value) -> Vec<String> {
    body["details"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["node_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn publish_cpu(env: &Env, node: &str, cpu: f32, n: i64) {
    let now = nerve_platform::now_ms();
    for i in 0..n {
        let mut hb = heartbeat(node, now - n + i, i);
        hb.cpu_pct = cpu;
        publish_heartbeat(&env.js, &hb).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_rule_fires_resolves_and_respects_silences() {
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let (base, seen) = receiver().await;

    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "ops", "kind": "webhook", "url": format!("{base}/hook"), "secret": "hook-key"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let channel_id = body["id"].as_str().expect("channel id").to_owned();
    publish_cpu(&env, "hot-a", 99.0, 1).await;
    publish_cpu(&env, "hot-b", 99.0, 1).await;
    publish_cpu(&env, "cool-c", 10.0, 1).await;
    eventually(DEADLINE, "three heartbeats stored", || async {
        (env.count("SELECT count() FROM heartbeats").await == 3).then_some(())
    })
    .await;

    // hot-b is under maintenance.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/silences",
        json!({"node_id": "hot-b", "duration": "1h", "reason": "maintenance"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let silence_id = body["id"].as_str().expect("silence id").to_owned();
    eventually(DEADLINE, "the silence in force", || async {
        let (_, l) = call(&app, Method::GET, "/api/v1/silences", Value::Null).await;
        (l["silences"][0]["active"] == true).then_some(())
    })
    .await;

    spawn_evaluator(&env, &metrics, &cancel).await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/alerts/rules",
        json!({
            "name": "cpu-hot", "kind": "threshold", "metric": "cpu_pct", "aggregate": "avg",
            "op": ">", "threshold": 95.0, "window_secs": 600, "for_secs": 0,
            "resolve_after_secs": 0, "severity": "critical", "channels": ["ops"]
        }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let rule_id = body["id"].as_str().expect("rule id").to_owned();

    // Both hot nodes fire (cool-c does not); hot-b's alert is muted by the silence.
    let firing = eventually(DEADLINE, "two alerts firing", || async {
        let a = alerts(&app, "").await;
        (a.len() == 2).then_some(a)
    })
    .await;
    let of = |node: &str| {
        firing
            .iter()
            .find(|a| a["node_id"] == node)
            .cloned()
            .unwrap_or_else(|| panic!("{node} firing: {firing:?}"))
    };
    let (a, b) = (of("hot-a"), of("hot-b"));
    assert_eq!(a["silenced_by"], "");
    assert_eq!(b["silenced_by"], silence_id.as_str());
    assert_eq!(b["muted_by"], silence_id.as_str());
    assert_eq!(a["muted_by"], "");
    assert_eq!(
        (a["rule_id"].as_str(), a["severity"].as_str()),
        (Some(rule_id.as_str()), Some("critical"))
    );
    assert_eq!(a["value"], 99.0);
    let alert_a = a["alert_id"].as_str().expect("id").to_owned();

    // The webhook: a 500, then the retry delivered, signed; only hot-a is listed.
    let firing_msg = eventually(DEADLINE, "the firing delivered", || async {
        let seen = seen.lock().expect("lock");
        (seen.len() >= 2).then(|| seen.clone())
    })
    .await;
    assert_eq!(firing_msg.len(), 2, "one retry: {firing_msg:?}");
    for (sig, body) in &firing_msg {
        assert_eq!(sig.as_deref(), Some("valid"), "signature");
        assert_eq!(body["details"]["status"], "firing");
        assert_eq!(listed_nodes(body), ["hot-a"]);
        assert_eq!(body["alert_id"], alert_a.as_str());
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("[CRITICAL] cpu-hot firing on 1 node: hot-a"),
            "{body}"
        );
    }
    eventually(DEADLINE, "both attempts recorded", || async {
        let rows: Vec<(u32, u8, String)> = env
            .ch
            .query(
                "SELECT attempt, ok, alert_id FROM notification_attempts \
                 WHERE channel_id = ? ORDER BY attempt",
            )
            .bind(&channel_id)
            .fetch_all()
            .await
            .ok()?;
        (rows == [(1, 0, alert_a.clone()), (2, 1, alert_a.clone())]).then_some(())
    })
    .await;
    // And counted, by kind and outcome.
    let counted = |outcome: &str| {
        sample(
            &metrics.render(),
            &format!(
                "nerve_alerts_notification_attempts_total{{kind=\"webhook\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    eventually(DEADLINE, "both attempts counted", || async {
        (counted("error") >= 1.0 && counted("ok") >= 1.0).then_some(())
    })
    .await;

    // A restarted evaluator restores the open alerts: no second firing, no second message.
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let restarted = Registry::new();
    spawn_evaluator(&env, &restarted, &cancel).await;
    eventually(DEADLINE, "three rounds of the new evaluator", || async {
        (rounds(&restarted) >= 3).then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM alert_log WHERE kind = 'AlertFired'")
            .await,
        2,
        "one alert per rule and node"
    );
    assert_eq!(seen.lock().expect("lock").len(), 2, "no repeated message");

    // hot-a recovers: its average over the window falls below 95, and it resolves.
    publish_cpu(&env, "hot-a", 1.0, 20).await;
    let resolved = eventually(DEADLINE, "hot-a resolved", || async {
        let a = alerts(&app, "?state=resolved").await;
        a.into_iter().find(|a| a["node_id"] == "hot-a")
    })
    .await;
    assert_eq!(resolved["alert_id"], alert_a.as_str());
    assert_eq!(resolved["resolve_reason"], "recovered");
    assert!(resolved["resolved_at"].is_string());
    let msgs = eventually(DEADLINE, "the resolution delivered", || async {
        let seen = seen.lock().expect("lock");
        (seen.len() >= 3).then(|| seen.clone())
    })
    .await;
    assert_eq!(msgs[2].1["details"]["status"], "resolved");
    assert_eq!(listed_nodes(&msgs[2].1), ["hot-a"]);
    let still: Vec<Value> = alerts(&app, "").await;
    assert_eq!(still.len(), 1);
    assert_eq!(still[0]["node_id"], "hot-b");

    // History: fired, then resolved — newest first (the history table is written after the
    // alert's current row, so it may be a batch behind what was just read).
    let history = eventually(DEADLINE, "the resolution in the history", || async {
        let (_, history) = call(
            &app,
            Method::GET,
            "/api/v1/alerts/history?node=hot-a",
            Value::Null,
        )
        .await;
        (history["events"].as_array().map(Vec::len) == Some(2)).then_some(history)
    })
    .await;
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["resolved", "fired"]);

    // Nothing ever told of hot-b while silenced; ending the silence tells it now.
    assert!(
        msgs.iter()
            .all(|(_, b)| !listed_nodes(b).contains(&"hot-b".to_owned())),
        "a silenced alert was delivered: {msgs:?}"
    );
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/silences/{silence_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let late = eventually(DEADLINE, "hot-b told once its silence ended", || async {
        let seen = seen.lock().expect("lock");
        seen.get(3).cloned()
    })
    .await;
    assert_eq!(late.1["details"]["status"], "firing");
    assert_eq!(listed_nodes(&late.1), ["hot-b"]);

    // The alias lists the same firing alerts; the rule counts them.
    let (_, alias) = call(&app, Method::GET, "/api/v1/alerts/list", Value::Null).await;
    assert_eq!(alias["total"], 1);
    let (_, rule) = call(
        &app,
        Method::GET,
        "/api/v1/alerts/rules/cpu-hot",
        Value::Null,
    )
    .await;
    assert_eq!(rule["firing"], 1);
    assert_eq!(rule["channels"], json!([channel_id]));

    // Deleting the rule resolves its last alert.
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/alerts/rules/cpu-hot",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let gone = eventually(DEADLINE, "hot-b resolved by the deletion", || async {
        let a = alerts(&app, "?state=resolved&node=hot-b").await;
        a.into_iter().next()
    })
    .await;
    assert_eq!(gone["resolve_reason"], "rule_deleted");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absence_rule_fires_when_an_agent_stops_and_resolves_when_it_returns() {
    let env = Env::start().await;
    let _project = env.spawn_nerve_with(&["project"], &[("NERVE_ALERTS__EVAL_INTERVAL_MS", "200")]);
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env
        .agent_node_with_heartbeats(2, "the agent's heartbeats")
        .await;
    let app = env.app().await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/alerts/rules",
        json!({
            "name": "node-gone", "kind": "absence", "metric": "suspect",
            "severity": "critical", "resolve_after_secs": 0,
            "scope": {"node_ids": [node]}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually(DEADLINE, "the rule stored", || async {
        let (s, _) = call(
            &app,
            Method::GET,
            "/api/v1/alerts/rules/node-gone",
            Value::Null,
        )
        .await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        alerts(&app, "").await.is_empty(),
        "an online node does not fire"
    );

    signal(&mut agent, "-TERM").await;
    let fired = eventually(DEADLINE, "the absence alert", || async {
        alerts(&app, "").await.into_iter().next()
    })
    .await;
    assert_eq!(fired["node_id"], node.as_str());
    assert_eq!(fired["rule_name"], "node-gone");
    assert!(
        fired["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("node suspect for"),
        "{fired}"
    );

    let _agent = env.spawn_nerve(&["agent"]);
    let resolved = eventually(DEADLINE, "resolved once the agent is back", || async {
        alerts(&app, "?state=resolved").await.into_iter().next()
    })
    .await;
    assert_eq!(resolved["alert_id"], fired["alert_id"]);
    assert_eq!(resolved["resolve_reason"], "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rules_and_silences_name_every_bad_field() {
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let fields = |body: &Value| -> Vec<String> {
        body["error"]["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|f| f["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };

    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/alerts/rules",
        json!({
            "name": "bad name", "kind": "threshold", "metric": "gpu_temp", "op": "==",
            "window_secs": 1, "severity": "page", "channels": ["nope"],
            "scope": {"clusters": ["nowhere"], "labels": ["GPU"]}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_fields");
    assert_eq!(
        fields(&body),
        [
            "name",
            "metric",
            "op",
            "threshold",
            "window_secs",
            "severity",
            "scope.labels",
            "scope.clusters",
            "channels"
        ],
        "{body}"
    );
    // Not JSON of the right shape: a plain 400.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/alerts/rules",
        json!({"name": "x", "unknown_field": 1}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );

    // A good rule; a second of the same name is refused by name.
    let good = json!({"name": "disk-full", "kind": "threshold", "metric": "disk_used_pct",
                      "aggregate": "last", "threshold": 90.0});
    let (status, body) = call(&app, Method::POST, "/api/v1/alerts/rules", good.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually(DEADLINE, "the rule stored", || async {
        let (_, l) = call(&app, Method::GET, "/api/v1/alerts/rules", Value::Null).await;
        (l["rules"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;
    let (status, body) = call(&app, Method::POST, "/api/v1/alerts/rules", good).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&body), ["name"]);

    // Replacing it: a bad change names its field; a good one is stored.
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/alerts/rules/disk-full",
        json!({"name": "disk-full", "kind": "threshold", "metric": "disk_used_pct", "threshold": 101}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&body), ["threshold"]);
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/v1/alerts/rules/disk-full",
        json!({"name": "disk-full", "kind": "threshold", "metric": "disk_used_pct",
               "aggregate": "max", "threshold": 95, "severity": "critical"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let rule = eventually(DEADLINE, "the rule replaced", || async {
        let (_, r) = call(
            &app,
            Method::GET,
            "/api/v1/alerts/rules/disk-full",
            Value::Null,
        )
        .await;
        (r["threshold"] == 95.0).then_some(r)
    })
    .await;
    assert_eq!(
        (rule["aggregate"].as_str(), rule["severity"].as_str()),
        (Some("max"), Some("critical"))
    );
    let (_, list) = call(&app, Method::GET, "/api/v1/alerts/rules", Value::Null).await;
    assert_eq!(
        list["rules"].as_array().map(Vec::len),
        Some(1),
        "replaced, not added"
    );

    // Silences: nothing to match, no end, no reason; an unknown rule; a past end.
    let (status, body) = call(&app, Method::POST, "/api/v1/silences", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&body), ["rule", "ends_at", "reason"]);
    let (_, body) = call(
        &app,
        Method::POST,
        "/api/v1/silences",
        json!({"rule": "nope", "ends_at": "2001-01-01T00:00:00Z", "reason": "x"}),
    )
    .await;
    assert_eq!(fields(&body), ["rule"]);
    let (_, body) = call(
        &app,
        Method::POST,
        "/api/v1/silences",
        json!({"rule": "disk-full", "ends_at": "2001-01-01T00:00:00Z", "reason": "x"}),
    )
    .await;
    assert_eq!(fields(&body), ["ends_at"]);
    let (status, _) = call(&app, Method::GET, "/api/v1/alerts?state=open", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/silences/not-a-silence",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rules_fire_on_critical_xids_and_task_failure_rates() {
    use nerve_schemas::{Envelope, GpuXidOccurred, TaskFinished, subjects};
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let now = nerve_platform::now_ms();
    for (node, severity) in [("gpu-bad", "critical"), ("gpu-meh", "warning")] {
        let xid = GpuXidOccurred {
            envelope: Envelope::new::<GpuXidOccurred>(node, now),
            gpu_index: 0,
            gpu_uuid: "GPU-0".into(),
            pci_bus_id: "00000000:2A:00.0".into(),
            xid: if severity == "critical" { 79 } else { 13 },
            meaning: "test".into(),
            severity: severity.into(),
            likely_application: severity != "critical",
            gpu_xid_total: 1,
        };
        crate::support::publish_event(&env.js, subjects::gpu_xid(node), &xid).await;
    }
    // flaky: 2 of 3 runs failed; steady: none of 2.
    for (node, exits) in [("flaky", &[1, 0, 2][..]), ("steady", &[0, 0][..])] {
        for code in exits {
            let finished = TaskFinished {
                envelope: Envelope::new::<TaskFinished>(node, now),
                task_id: uuid::Uuid::now_v7().to_string(),
                exit_code: Some(*code),
                signal: None,
                duration_ms: 5,
                output_bytes: 0,
                truncated: false,
                error: String::new(),
            };
            crate::support::publish_event(&env.js, subjects::task_node(node), &finished).await;
        }
    }
    eventually(DEADLINE, "the XIDs and task results stored", || async {
        let xids = env.count("SELECT count() FROM node_events").await;
        let runs = env.count("SELECT count() FROM task_nodes FINAL").await;
        (xids == 2 && runs == 5).then_some(())
    })
    .await;
    spawn_evaluator(&env, &metrics, &cancel).await;
    for rule in [
        json!({"name": "xid-critical", "kind": "event", "metric": "gpu_xid_critical",
               "op": ">=", "threshold": 1, "window_secs": 3600, "severity": "critical"}),
        json!({"name": "tasks-failing", "kind": "event", "metric": "task_failure_pct",
               "op": ">", "threshold": 50, "window_secs": 3600}),
    ] {
        let (status, body) = call(&app, Method::POST, "/api/v1/alerts/rules", rule).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let firing = eventually(DEADLINE, "both event rules firing", || async {
        let a = alerts(&app, "").await;
        (a.len() == 2).then_some(a)
    })
    .await;
    let mut fired: Vec<(String, String, f64)> = firing
        .iter()
        .map(|a| {
            (
                a["rule_name"].as_str().unwrap_or_default().to_owned(),
                a["node_id"].as_str().unwrap_or_default().to_owned(),
                a["value"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    fired.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(fired[0].0, "tasks-failing");
    assert_eq!(fired[0].1, "flaky");
    assert!((fired[0].2 - 200.0 / 3.0).abs() < 0.01, "{fired:?}");
    assert_eq!(
        fired[1],
        ("xid-critical".to_owned(), "gpu-bad".to_owned(), 1.0)
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_threshold_metric_is_computed_per_node() {
    use nerve_schemas::GpuSample;
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let gpu = |index: i32, temp: f32, util: f32, used_gib: i64, power: f32| GpuSample {
        index,
        uuid: format!("GPU-{index}"),
        util_pct: util,
        mem_used_bytes: used_gib << 30,
        mem_total_bytes: 80 << 30,
        temperature_c: temp,
        power_w: power,
        health: "ok".into(),
        ..GpuSample::default()
    };
    let mut hb = heartbeat("gpu-node", nerve_platform::now_ms(), 1);
    hb.cpu_pct = 42.0;
    hb.load1 = 3.5;
    hb.gpus = vec![gpu(0, 61.0, 20.0, 60, 300.0), gpu(1, 88.0, 95.0, 20, 650.0)];
    publish_heartbeat(&env.js, &hb).await;
    eventually(DEADLINE, "the heartbeat stored", || async {
        (env.count("SELECT count() FROM heartbeats").await == 1).then_some(())
    })
    .await;
    spawn_evaluator(&env, &metrics, &cancel).await;
    // (metric, aggregate, expected value): every rule holds (>= 0), so each fires with its value.
    let expected = [
        ("cpu_pct", "avg", 42.0),
        ("mem_used_pct", "last", 25.0),
        ("disk_used_pct", "max", 10.0),
        ("load1", "min", 3.5),
        ("gpu_temperature_c", "min", 88.0),
        ("gpu_util_pct", "avg", 95.0),
        ("gpu_mem_used_pct", "max", 75.0),
        ("gpu_power_w", "last", 650.0),
    ];
    for (metric, aggregate, _) in expected {
        let (status, body) = call(
            &app,
            Method::POST,
            "/api/v1/alerts/rules",
            json!({"name": metric.replace('_', "-"), "kind": "threshold", "metric": metric,
                   "aggregate": aggregate, "op": ">=", "threshold": 0}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let firing = eventually(DEADLINE, "a rule per metric firing", || async {
        let a = alerts(&app, "").await;
        (a.len() == expected.len()).then_some(a)
    })
    .await;
    for (metric, _, value) in expected {
        let name = metric.replace('_', "-");
        let alert = firing
            .iter()
            .find(|a| a["rule_name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} firing: {firing:?}"));
        let got = alert["value"].as_f64().unwrap_or(f64::NAN);
        assert!((got - value).abs() < 0.01, "{metric}: {got} != {value}");
        assert_eq!(alert["node_id"], "gpu-node");
    }
    cancel.cancel();
}

/// The built-in `archive-lag` alert: fires on the stream while its oldest event not archived is
/// 10 % of its `max_age` old (2 s of 20 s here), tells its channel, and resolves once the
/// archiver has sealed the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_falling_behind_fires_archive_lag_and_catching_up_resolves_it() {
    let env = Env::start().await;
    crate::archive::telemetry_max_age(&env, 20).await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let (base, seen) = receiver().await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "archive-oncall", "kind": "webhook", "url": format!("{base}/hook")}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let dir = tempfile::tempdir().expect("tmp");
    let archive = Archive::open(dir.path());
    let mut watch = Watch::new(
        archive.clone(),
        vec![TELEMETRY_STREAM.to_owned()],
        std::time::Duration::ZERO,
    );
    watch.alert_lag_pct = 10.0;
    watch.alert_channels = vec!["archive-oncall".to_owned()];
    spawn_evaluator_watching(&env, Some(watch), &metrics, &cancel).await;
    publish_cpu(&env, "n-1", 10.0, 1).await;

    let firing = eventually(DEADLINE, "archive-lag firing", || async {
        let a = alerts(&app, "").await;
        a.into_iter().find(|a| a["rule_name"] == "archive-lag")
    })
    .await;
    assert_eq!(firing["node_id"], TELEMETRY_STREAM, "{firing}");
    assert_eq!(firing["severity"], "critical", "{firing}");
    assert!(firing["value"].as_f64().unwrap_or(0.0) >= 10.0, "{firing}");
    let told = |status: &'static str| {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move {
                let seen = seen.lock().expect("lock");
                seen.iter()
                    .any(|(_, m)| {
                        m["details"]["status"] == status
                            && m["details"]["rule"]["name"] == "archive-lag"
                            && listed_nodes(m) == [TELEMETRY_STREAM]
                    })
                    .then_some(())
            }
        }
    };
    eventually(DEADLINE, "the channel told of the firing", told("firing")).await;

    tokio::spawn(nerve_ingest::archive::run(
        env.js.clone(),
        archive,
        vec![TELEMETRY_STREAM.to_owned()],
        Sealing {
            span: std::time::Duration::from_secs(1),
            grace: std::time::Duration::ZERO,
        },
        metrics.clone(),
        cancel.clone(),
    ));
    eventually(DEADLINE, "archive-lag resolved", || async {
        let a = alerts(&app, "?state=resolved").await;
        a.into_iter().find(|a| a["rule_name"] == "archive-lag")
    })
    .await;
    eventually(
        DEADLINE,
        "the channel told of the resolution",
        told("resolved"),
    )
    .await;
    assert!(alerts(&app, "").await.is_empty());
    cancel.cancel();
}
