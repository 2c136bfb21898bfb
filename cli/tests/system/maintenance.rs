//! Maintenance states end to end: two real agents, the real `nerve project`, the API over the
//! real event log, and `nerve node` against it over HTTP. An operator cordons a node (who comes
//! from the token, why is kept, both in the history); the node list filters by the state and
//! the summary counts it; an untargeted task skips the cordoned node and runs only on the
//! other, a task naming it runs on it and `include_cordoned` takes it too; policy-only states
//! and bad requests are 400, a viewer 403; a maintenance change published on a node's own
//! subject is refused by the projector; the past view shows the node in service before the
//! cordon; returned to service, it takes untargeted work again.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use nerve_api::dto::auth::Role;
use nerve_api::dto::tasks::{TaskCreated, TaskDetail};
use nerve_platform::testkit::eventually;
use nerve_schemas::{Envelope, NodeMaintenanceChanged, subjects};
use serde_json::{Value, json};

use crate::support::{Api, DEADLINE, Env, call, get_ok, issue_token, publish_event, signal};

/// Runs `echo` on `targets`; the task once every expected node is done.
async fn run_task(app: &Api, targets: Value) -> (TaskCreated, TaskDetail) {
    let body = json!({"kind": "command", "argv": ["echo", "hi"], "targets": targets});
    let (status, json) = call(app, Method::POST, "/api/v1/tasks", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let created: TaskCreated = serde_json::from_value(json).expect("TaskCreated");
    let uri = format!("/api/v1/tasks/{}", created.task_id);
    let detail = eventually(Duration::from_secs(60), "the task done", || async {
        let (status, json) = call(app, Method::GET, &uri, Value::Null).await;
        let d: TaskDetail = (status == StatusCode::OK)
            .then(|| serde_json::from_value(json).expect("TaskDetail"))?;
        (d.summary.expected > 0 && d.summary.counts.done() == d.summary.expected).then_some(d)
    })
    .await;
    assert_eq!(
        detail.summary.counts.succeeded, detail.summary.expected,
        "{detail:?}"
    );
    (created, detail)
}

fn ids_of(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_cordon_nodes_and_tasks_skip_them_unless_named() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let dirs = tempfile::tempdir().expect("tmp");
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let state = dirs.path().join(format!("agent-{i}"));
        agents.push(env.spawn_nerve_with(
            &["agent"],
            &[("NERVE_AGENT__STATE_DIR", &state.display().to_string())],
        ));
        ids.push(env.node_of(&state).await);
    }
    ids.sort();
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let admin = env.app().await;
    let ops = admin.with_token(&issue_token(&admin.state, "ops", Role::Operator).await);
    let viewer = admin.with_token(&issue_token(&admin.state, "eyes", Role::Viewer).await);
    eventually(DEADLINE, "both nodes listed", || async {
        (ids_of(&get_ok(&admin, "/api/v1/nodes").await) == ids).then_some(())
    })
    .await;
    let before_ms = nerve_platform::now_ms() as u64;

    // Bad requests explain themselves; a viewer may not; an unknown node is 404.
    let put = |app: &Api, node: &str, body: Value| {
        let (app, uri) = (app.clone(), format!("/api/v1/nodes/{node}/maintenance"));
        async move { call(&app, Method::PUT, &uri, body).await }
    };
    for (body, needle) in [
        (
            json!({"state": "remediating", "reason": "x"}),
            "remediation policies",
        ),
        (json!({"state": "cordoned", "reason": "  "}), "reason"),
        (json!({"state": "drained", "reason": "x"}), "drained"),
        (json!({"state": "cordoned"}), "reason"),
    ] {
        let (status, answer) = put(&ops, &b, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.to_string().contains(needle), "{body}: {answer}");
    }
    let cordon = json!({"state": "cordoned", "reason": "fan swap"});
    assert_eq!(
        put(&viewer, &b, cordon.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(&ops, "no-such-node", cordon.clone()).await.0,
        StatusCode::NOT_FOUND
    );

    // The operator cordons b: who and why are in its history.
    let (status, answer) = put(&ops, &b, cordon).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let detail = get_ok(&admin, &format!("/api/v1/nodes/{b}")).await;
    let m = &detail["maintenance"];
    assert_eq!(m["state"], "cordoned", "{m}");
    assert_eq!(m["history"][0]["reason"], "fan swap");
    assert!(
        m["history"][0]["requested_by"]
            .as_str()
            .expect("who")
            .starts_with("ops/"),
        "{m}"
    );
    assert_eq!(m["history"][0]["policy_id"], "");

    // The list filters by it and shows it; the summary counts it.
    let cordoned = eventually(DEADLINE, "the list filters cordoned nodes", || async {
        let page = get_ok(&admin, "/api/v1/nodes?maintenance=cordoned").await;
        (ids_of(&page) == [b.clone()]).then_some(page)
    })
    .await;
    assert_eq!(cordoned["nodes"][0]["maintenance"], "cordoned");
    let summary = get_ok(&admin, "/api/v1/fleet/summary").await;
    assert_eq!(summary["cordoned"], 1, "{summary}");
    let in_service = get_ok(&admin, "/api/v1/nodes?maintenance=in_service").await;
    assert_eq!(ids_of(&in_service), vec![a.clone()]);

    // An untargeted task skips b; one naming b runs there; include_cordoned takes both.
    let (created, _) = run_task(&ops, json!({})).await;
    assert_eq!(created.expected_nodes, vec![a.clone()]);
    assert_eq!(created.skipped_maintenance, 1);
    let (created, _) = run_task(&ops, json!({"node_ids": [b]})).await;
    assert_eq!(created.expected_nodes, vec![b.clone()]);
    let (created, _) = run_task(&ops, json!({"include_cordoned": true})).await;
    assert_eq!(created.expected_nodes, ids);

    // A change on a node's own subject (which its agent may publish on) is refused.
    let forged = NodeMaintenanceChanged {
        envelope: Envelope::new::<NodeMaintenanceChanged>(&*a, nerve_platform::now_ms()),
        state: "cordoned".into(),
        reason: "the node cordons itself".into(),
        policy_id: String::new(),
        run_id: String::new(),
        requested_by: "node".into(),
    };
    publish_event(&env.js, subjects::control_node(&a), &forged).await;
    eventually(DEADLINE, "the forged change rejected", || async {
        let n = env
            .count(&format!(
                "SELECT count() FROM rejected_events WHERE subject = '{}'",
                subjects::control_node(&a)
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    let detail = get_ok(&admin, &format!("/api/v1/nodes/{a}")).await;
    assert_eq!(detail["maintenance"]["state"], "in_service");

    // The past: b was in service before the cordon.
    let at = nerve_api::time::rfc3339_exact(before_ms);
    let past = get_ok(&admin, &format!("/api/v1/nodes/{b}?at={at}")).await;
    assert_eq!(past["maintenance"]["state"], "in_service", "{past}");

    // `nerve node` over HTTP with the operator's token: b back in service, then listed so.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = admin.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let token_file = dirs.path().join("ops.token");
    std::fs::write(&token_file, &ops.token).expect("token file");
    let nerve_node = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
            .args(["node", "--api", &base, "--token-file"])
            .arg(&token_file)
            .args(args)
            .envs(env.child_env())
            .output()
            .expect("nerve node");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    nerve_node(&["uncordon", &b, "--reason", "fan replaced"]);
    let shown = nerve_node(&["show", &b]);
    assert_eq!(shown["maintenance"]["state"], "in_service", "{shown}");
    assert_eq!(shown["maintenance"]["history"][0]["reason"], "fan replaced");
    assert_eq!(
        shown["maintenance"]["history"].as_array().map(Vec::len),
        Some(2)
    );
    eventually(DEADLINE, "no node cordoned", || async {
        let listed = nerve_node(&["list", "--state", "cordoned"]);
        (listed["total"] == 0).then_some(())
    })
    .await;
    let (created, _) = run_task(&ops, json!({})).await;
    assert_eq!(created.expected_nodes, ids);

    for mut agent in agents {
        signal(&mut agent, "-TERM").await;
    }
    signal(&mut project, "-TERM").await;
}
