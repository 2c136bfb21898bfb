//! The agent's guard rails with a real agent, the real `nerve project` and the API: with at
//! most two tasks at once a third waits (`queued` in the ledger, `TaskQueued` in the log) and
//! runs once a slot frees; a task runs in its own directory, removed when it ends; the node's
//! longest timeout stops a task that asked for more; the node's region and datacenter are in its
//! inventory and are its labels, which the node list filters by.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use nerve_api::dto::tasks::{TaskCreated, TaskDetail};
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};

use crate::support::{Api, DEADLINE, Env, call, get_ok, signal};

async fn create(app: &Api, node: &str, body: Value) -> String {
    let mut body = body;
    body["targets"] = json!({"node_ids": [node]});
    let (status, json) = call(app, Method::POST, "/api/v1/tasks", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    serde_json::from_value::<TaskCreated>(json)
        .expect("TaskCreated")
        .task_id
}

/// The task's one ledger line once its state satisfies `done`.
async fn line_when(app: &Api, task: &str, what: &str, done: impl Fn(&str) -> bool) -> Value {
    let uri = format!("/api/v1/tasks/{task}");
    eventually(Duration::from_secs(60), what, || async {
        let (status, json) = call(app, Method::GET, &uri, Value::Null).await;
        let detail: TaskDetail = (status == StatusCode::OK)
            .then(|| serde_json::from_value(json).expect("TaskDetail"))?;
        let line = detail.nodes.first()?;
        done(&line.state).then(|| serde_json::to_value(line).expect("json"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_caps_concurrency_cleans_up_and_holds_its_timeout() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let dirs = tempfile::tempdir().expect("tmp");
    let state = dirs.path().join("agent");
    let gate = dirs.path().join("gate");
    let mut agent = env.spawn_nerve_with(
        &["agent"],
        &[
            ("NERVE_AGENT__STATE_DIR", &state.display().to_string()),
            ("NERVE_AGENT__MAX_CONCURRENT_TASKS", "2"),
            ("NERVE_AGENT__TASK_DIR_KEEP_SECS", "0"),
            ("NERVE_AGENT__TASK_MAX_TIMEOUT_SECS", "2"),
            ("NERVE_AGENT__REGION", "eu-west"),
            ("NERVE_AGENT__DATACENTER", "ams1"),
        ],
    );
    let node = env.node_of(&state).await;
    let app = env.app().await;

    // Two tasks hold both slots until the gate opens; a third waits, queued.
    let held = json!({
        "kind": "script",
        "script": format!("while [ ! -e {} ]; do sleep 0.05; done; echo through", gate.display()),
    });
    let first = create(&app, &node, held.clone()).await;
    let second = create(&app, &node, held.clone()).await;
    for task in [&first, &second] {
        line_when(&app, task, "a slot taken", |s| s == "running").await;
    }
    let third = create(&app, &node, held).await;
    line_when(&app, &third, "the third queued", |s| s == "queued").await;
    // The history table is written after the ledger, in the same batch.
    eventually(DEADLINE, "TaskQueued in the task's history", || async {
        let sql = format!(
            "SELECT count() FROM task_events WHERE task_id = '{third}' AND kind = 'TaskQueued'"
        );
        (env.count(&sql).await == 1).then_some(())
    })
    .await;
    std::fs::write(&gate, b"").expect("open the gate");
    for task in [&first, &second, &third] {
        let line = line_when(&app, task, "done", |s| s == "succeeded").await;
        assert_eq!(line["exit_code"], 0, "{line}");
    }

    // Its own directory, gone once it ended.
    let pwd = create(&app, &node, json!({"kind": "command", "argv": ["pwd"]})).await;
    line_when(&app, &pwd, "pwd done", |s| s == "succeeded").await;
    let (_, out) = call(
        &app,
        Method::GET,
        &format!("/api/v1/tasks/{pwd}/nodes/{node}/output"),
        Value::Null,
    )
    .await;
    let dir = out["stdout"].as_str().expect("stdout").trim().to_owned();
    assert!(dir.ends_with(&format!("tasks/{pwd}")), "{dir}");
    eventually(DEADLINE, "the task's directory removed", || async {
        (!std::path::Path::new(&dir).exists()).then_some(())
    })
    .await;

    // The node's longest timeout wins over the task's own.
    let long = create(
        &app,
        &node,
        json!({"kind": "command", "argv": ["sleep", "30"], "timeout_secs": 60}),
    )
    .await;
    line_when(&app, &long, "stopped at the node's limit", |s| {
        s == "timed_out"
    })
    .await;
    eventually(DEADLINE, "TaskTimedOut in the task's history", || async {
        let sql = format!(
            "SELECT count() FROM task_events WHERE task_id = '{long}' AND kind = 'TaskTimedOut'"
        );
        (env.count(&sql).await == 1).then_some(())
    })
    .await;

    // Region and datacenter: labels the list filters by.
    let listed = eventually(DEADLINE, "the node listed by region", || async {
        let page = get_ok(&app, "/api/v1/nodes?label=region%3Deu-west").await;
        (page["total"] == 1).then_some(page)
    })
    .await;
    assert_eq!(listed["nodes"][0]["id"], node.as_str());
    // … and in its inventory.
    let detail = eventually(DEADLINE, "the location in the inventory", || async {
        let detail = get_ok(&app, &format!("/api/v1/nodes/{node}")).await;
        let location = &detail["inventory"]["detail"]["location"];
        (location["region"] == "eu-west" && location["datacenter"] == "ams1").then_some(detail)
    })
    .await;
    let labels = detail["labels"].to_string();
    assert!(
        labels.contains("region=eu-west") && labels.contains("datacenter=ams1"),
        "{labels}"
    );
    let elsewhere = get_ok(&app, "/api/v1/nodes?label=datacenter%3Dfra2").await;
    assert_eq!(elsewhere["total"], 0);

    signal(&mut agent, "-TERM").await;
    signal(&mut project, "-TERM").await;
}
