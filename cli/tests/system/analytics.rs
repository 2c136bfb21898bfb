//! `docs/analytics.md` cannot rot: on a ClickHouse 18.16 started with Nerve's users (as `nerve
//! dev` starts it), a fleet's worth of events folded by the real projectors — GPU heartbeats
//! with rising ECC errors, inventory with a kernel change, an XID, a node going offline, an
//! alert firing and resolving, a hook task that fails on one node, a malformed event, a cluster
//! made through the API — then every query in the document run with `clickhouse-client` as the
//! read-only analyst returns rows; every query also runs on current ClickHouse (chdb); and
//! every table and column of the schema is described in the document.

use std::io::Write;
use std::process::{Command, Stdio};

use axum::http::Method;
use nerve_platform::services::{ClickHouseServer, ClickHouseUsers};
use nerve_platform::testkit::eventually;
use nerve_schemas::tasks::{TaskFinished, TaskRequested, TaskSelector, TaskSpec};
use nerve_schemas::{AlertFired, AlertResolved, Envelope, GpuXidOccurred, subjects};
use serde_json::json;

use crate::support::{
    DEADLINE, Env, call, heartbeat, inventory, publish_event, publish_heartbeat, publish_inventory,
    publish_raw, publish_went_offline,
};

const MIN: i64 = 60_000;

/// The SQL blocks of `docs/analytics.md`.
fn queries(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(q), "```") => {
                out.push(q.trim().to_owned());
                current = None;
            }
            (Some(q), l) => {
                q.push_str(l);
                q.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// Runs `sql` on the analyst's connection; its TSV output.
fn as_analyst(server: &ClickHouseServer, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("clickhouse-client")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.tcp_port.to_string(),
        ])
        .args([
            "--user",
            "analyst",
            "--password",
            password,
            "--database",
            "nerve",
        ])
        .args(["--format", "TSV", "--query", sql])
        .output()
        .map_err(|e| format!("clickhouse-client: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Runs every query on current ClickHouse (chdb) over the schema, empty.
const CHDB: &str = r#"
import json, sys
from chdb import session
given = json.load(sys.stdin)
s = session.Session(sys.argv[1])
for st in given["ddl"]:
    s.query(st)
for q in given["queries"]:
    try:
        s.query(q)
    except Exception as e:
        print("FAILED:", q.splitlines()[0], "\n", e)
        sys.exit(1)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_in_the_analytics_guide_answers_on_old_and_new_clickhouse() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/analytics.md"),
    )
    .expect("docs/analytics.md");
    let sql = queries(&doc);
    assert!(sql.len() >= 12, "{} queries", sql.len());

    // ClickHouse as `nerve dev` runs it: Nerve's user, and the read-only analyst.
    let dir = tempfile::tempdir().expect("tmp");
    let users = ClickHouseUsers::load_or_create(&dir.path().join("passwords")).expect("users");
    let server = {
        let (path, users) = (dir.path().join("clickhouse"), users.clone());
        tokio::task::spawn_blocking(move || {
            ClickHouseServer::start_with_users(&path, None, Some(&users))
        })
        .await
        .expect("join")
        .expect("clickhouse")
    };
    let mut env = Env::start().await;
    env.config.clickhouse.url = server.url.clone();
    env.config.clickhouse.user = "nerve".into();
    env.config.clickhouse.password = users.nerve_password.clone();
    env.config.clickhouse.database = "nerve".into();
    nerve_projections::ensure_tables(&env.config.clickhouse)
        .await
        .expect("tables");
    env.ch = nerve_platform::clickhouse::client(&env.config.clickhouse);
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let app = env.app().await;
    let js = &env.js;

    // A cluster made through the API (audited); both nodes join it below.
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "train", "description": ""}),
    )
    .await;
    assert!(status.is_success(), "{created}");
    let cluster = created["cluster_id"].as_str().expect("id").to_owned();
    // The projectors had only just started: wait for the cluster to be there.
    eventually(DEADLINE, "the cluster projected", || async {
        let (status, _) = call(
            &app,
            Method::GET,
            &format!("/api/v1/clusters/{cluster}"),
            json!(null),
        )
        .await;
        status.is_success().then_some(())
    })
    .await;
    let (a, b) = ("gpu-a", "gpu-b");

    // Two hours of 2-GPU heartbeats every 10 min; a's GPU 0 gains uncorrectable ECC errors.
    let now = nerve_platform::now_ms();
    let start = now - 120 * MIN;
    for i in 0..12i64 {
        for node in [a, b] {
            let mut hb = heartbeat(node, start + i * 10 * MIN, i);
            hb.gpus = (0..2)
                .map(|g| nerve_schemas::GpuSample {
                    index: g,
                    uuid: format!("GPU-{node}-{g}"),
                    util_pct: 80.0,
                    temperature_c: 60.0 + g as f32,
                    power_w: 500.0,
                    ecc_uncorrected: Some(if node == a && g == 0 { i } else { 0 }),
                    remapped_rows_uncorrectable: Some(0),
                    ..Default::default()
                })
                .collect();
            publish_heartbeat(js, &hb).await;
        }
    }
    // Inventory: a's kernel changes; both have H100s.
    for (node, kernel, at) in [
        (a, "6.1.0", start),
        (a, "6.5.0", now - MIN),
        (b, "6.1.0", start),
    ] {
        let mut inv = inventory(node, node, at);
        inv.kernel_version = kernel.into();
        inv.gpus = vec![nerve_schemas::GpuDevice {
            name: "NVIDIA H100 80GB HBM3".into(),
            driver_version: "550.54.15".into(),
            ..Default::default()
        }];
        publish_inventory(js, &inv).await;
    }
    let xid = GpuXidOccurred {
        envelope: Envelope::new::<GpuXidOccurred>(a, now - 30 * MIN),
        gpu_index: 0,
        gpu_uuid: format!("GPU-{a}-0"),
        pci_bus_id: "0000:17:00.0".into(),
        xid: 79,
        meaning: "GPU has fallen off the bus".into(),
        severity: "critical".into(),
        likely_application: false,
        gpu_xid_total: 1,
    };
    publish_event(js, subjects::gpu_xid(a), &xid).await;
    publish_went_offline(js, b, now - 10 * MIN).await;

    let (alert, rule) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let fired = AlertFired {
        envelope: Envelope::new::<AlertFired>(a, now - 40 * MIN),
        alert_id: alert.clone(),
        rule_id: rule.clone(),
        rule_name: "gpu-hot".into(),
        severity: "warning".into(),
        value: 91.0,
        threshold: 90.0,
        summary: "gpu temperature 91 > 90".into(),
        pending_since_ms: now - 41 * MIN,
        silenced_by: String::new(),
    };
    publish_event(js, subjects::alert(&rule, a), &fired).await;
    let resolved = AlertResolved {
        envelope: Envelope::new::<AlertResolved>(a, now - 38 * MIN),
        alert_id: alert,
        rule_id: rule.clone(),
        rule_name: "gpu-hot".into(),
        severity: "warning".into(),
        threshold: 90.0,
        summary: "gpu temperature 91 > 90".into(),
        value: Some(70.0),
        reason: "recovered".into(),
        fired_at_ms: now - 40 * MIN,
        silenced_by: String::new(),
    };
    publish_event(js, subjects::alert(&rule, a), &resolved).await;

    // A hook that succeeds on a and fails on b.
    let task = uuid::Uuid::now_v7().to_string();
    let requested = TaskRequested {
        envelope: Envelope::new::<TaskRequested>(&task, now - 20 * MIN),
        task_id: task.clone(),
        requested_by: "analytics-test".into(),
        spec: TaskSpec {
            kind: "hook".into(),
            hook: "drain".into(),
            timeout_secs: 60,
            ..Default::default()
        },
        selector: TaskSelector::default(),
        expected_nodes: vec![a.into(), b.into()],
        batch_size: 0,
        accept_deadline_secs: 30,
    };
    publish_event(js, subjects::task_request(&task), &requested).await;
    for (node, code) in [(a, 0), (b, 1)] {
        let finished = TaskFinished {
            envelope: Envelope::new::<TaskFinished>(node, now - 19 * MIN),
            task_id: task.clone(),
            exit_code: Some(code),
            signal: None,
            duration_ms: 1500,
            output_bytes: 0,
            truncated: false,
            error: String::new(),
        };
        publish_event(js, subjects::task_node(node), &finished).await;
    }
    // Labels, and one event no projector can read.
    let labels = nerve_schemas::NodeLabelsSet {
        envelope: Envelope::new::<nerve_schemas::NodeLabelsSet>(a, now - 100 * MIN),
        source: "operator".into(),
        labels: vec![nerve_schemas::Label {
            key: "rack".into(),
            value: "r1".into(),
        }],
        requested_by: "analytics-test".into(),
    };
    publish_event(js, subjects::control_node(a), &labels).await;
    publish_raw(
        js,
        subjects::heartbeat(a),
        "not-avro-1",
        b"not avro".to_vec(),
    )
    .await;

    // Both nodes in the cluster, once they are known.
    eventually(DEADLINE, "both nodes", || async {
        (env.count("SELECT count() FROM node_state").await == 2).then_some(())
    })
    .await;
    for node in [a, b] {
        let uri = format!("/api/v1/clusters/{cluster}/nodes/{node}");
        let (status, body) = call(&app, Method::PUT, &uri, json!(null)).await;
        assert!(status.is_success(), "{body}");
    }

    let expected = [
        ("SELECT count() FROM heartbeats", 24),
        ("SELECT sum(samples) FROM heartbeats_1h", 24),
        ("SELECT count() FROM inventory_log", 3),
        ("SELECT count() FROM node_events", 2),
        ("SELECT count() FROM alert_log", 2),
        (
            "SELECT count() FROM task_nodes FINAL WHERE state IN ('succeeded', 'failed')",
            2,
        ),
        ("SELECT count() FROM rejected_events", 1),
        ("SELECT count() FROM label_log", 1),
        (
            "SELECT count() FROM cluster_members FINAL WHERE assigned = 1",
            2,
        ),
        ("SELECT count() FROM audit_log WHERE method != 'GET'", 3),
    ];
    for (q, n) in expected {
        eventually(DEADLINE, q, || async {
            (env.count(q).await >= n).then_some(())
        })
        .await;
    }

    // Every query, as the analyst, with clickhouse-client: each answers with rows.
    for q in &sql {
        let out =
            as_analyst(&server, &users.analyst_password, q).unwrap_or_else(|e| panic!("{q}\n{e}"));
        assert!(!out.trim().is_empty(), "no rows:\n{q}");
    }
    // The analyst reads and does nothing else.
    let refused = as_analyst(&server, &users.analyst_password, "DROP TABLE heartbeats");
    assert!(refused.is_err(), "the analyst dropped a table");

    // Every table and column is described.
    let columns: Vec<(String, String)> = env
        .ch
        .query("SELECT table, name FROM system.columns WHERE database = 'nerve'")
        .fetch_all()
        .await
        .expect("columns");
    let missing: Vec<String> = columns
        .iter()
        .filter(|(t, c)| !doc.contains(&format!("`{t}`")) || !doc.contains(&format!("`{c}`")))
        .map(|(t, c)| format!("{t}.{c}"))
        .collect();
    assert!(missing.is_empty(), "not in docs/analytics.md: {missing:?}");
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");

    // Current ClickHouse runs them too (over the same schema, empty).
    let python = nerve_platform::services::tools_python();
    let mut child = Command::new(&python)
        .args(["-c", CHDB])
        .arg(dir.path().join("chdb"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python (infra/dev/install.sh --test)");
    let given = json!({"ddl": nerve_projections::all_ddl("default"), "queries": sql});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(given.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "current ClickHouse refused a query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
