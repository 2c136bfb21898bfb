//! Tasks end to end with real processes: three real agents, the real projector/dispatcher
//! process, the API router over the real event log and ClickHouse. Fan-out with correct
//! per-node output, hooks, a non-zero exit, truncation, a timeout that kills the whole process
//! tree, a cancel mid-run, and a stopped agent that ends up `unreachable` while the ledger still
//! adds up; bad requests are 400 with the reason.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use nerve_api::dto::{tasks::TaskCreated, tasks::TaskDetail, tasks::TaskOutput};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{Api, DEADLINE, Env, call, signal};

struct Fleet {
    env: Env,
    app: Api,
    agents: Vec<(String, tokio::process::Child)>,
    project: tokio::process::Child,
    _dirs: tempfile::TempDir,
}

/// Three agents (each its own state dir, one shared hooks dir with `hello`), the projector
/// process with the dispatcher, and the API.
async fn fleet() -> Fleet {
    let env = Env::start().await;
    let project = env.spawn_nerve(&["project"]);
    let dirs = tempfile::tempdir().expect("tmp");
    let hooks = dirs.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir");
    let hello = hooks.join("hello");
    std::fs::write(&hello, "#!/bin/sh\necho \"hello $1 from $(hostname)\"\n").expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut agents = Vec::new();
    for i in 0..3 {
        let state: PathBuf = dirs.path().join(format!("agent-{i}"));
        let child = env.spawn_nerve_with(
            &["agent"],
            &[
                ("NERVE_AGENT__STATE_DIR", &state.display().to_string()),
                ("NERVE_AGENT__HOOKS_DIR", &hooks.display().to_string()),
            ],
        );
        let id = env.node_of(&state).await;
        agents.push((id, child));
    }
    Fleet {
        app: env.app().await,
        env,
        agents,
        project,
        _dirs: dirs,
    }
}

impl Fleet {
    fn ids(&self) -> Vec<String> {
        self.agents.iter().map(|(id, _)| id.clone()).collect()
    }

    async fn create(&self, mut body: Value) -> TaskCreated {
        if body.get("targets").is_none() {
            body["targets"] = json!({ "node_ids": self.ids() });
        }
        let (status, json) = call(&self.app, Method::POST, "/api/v1/tasks", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        serde_json::from_value(json).expect("TaskCreated")
    }

    async fn detail(&self, id: &str) -> Option<TaskDetail> {
        let (status, json) = call(
            &self.app,
            Method::GET,
            &format!("/api/v1/tasks/{id}"),
            Value::Null,
        )
        .await;
        (status == StatusCode::OK).then(|| serde_json::from_value(json).expect("TaskDetail"))
    }

    /// The task's detail once every expected node is in a final state.
    async fn finished(&self, id: &str) -> TaskDetail {
        eventually(Duration::from_secs(60), "every node done", || async {
            let d = self.detail(id).await?;
            (d.summary.counts.done() == d.summary.expected && d.summary.expected > 0).then_some(d)
        })
        .await
    }

    async fn output(&self, id: &str, node: &str) -> TaskOutput {
        let (status, json) = call(
            &self.app,
            Method::GET,
            &format!("/api/v1/tasks/{id}/nodes/{node}/output"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        serde_json::from_value(json).expect("TaskOutput")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_fan_out_to_real_agents_with_an_exact_ledger() {
    let mut f = fleet().await;
    let ids = f.ids();

    // A script on every node: per-node output, stdout and stderr apart, the exit code kept.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "echo \"out-$GREETING\"\necho oops >&2\nexit 3\n",
            "env": { "GREETING": "hi" },
        }))
        .await;
    assert_eq!(t.expected_nodes.len(), 3);
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.summary.counts.failed, 3, "{:?}", d.nodes);
    for n in &d.nodes {
        assert_eq!(
            (n.state.as_str(), n.exit_code),
            ("failed", Some(3)),
            "{n:?}"
        );
        let out = f.output(&t.task_id, &n.node_id).await;
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out-hi\n", "oops\n")
        );
    }

    // A command and a hook succeed.
    let t = f
        .create(json!({ "kind": "command", "argv": ["sh", "-c", "echo $((6 * 7))"] }))
        .await;
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.summary.counts.succeeded, 3);
    assert_eq!(f.output(&t.task_id, &ids[0]).await.stdout, "42\n");
    let t = f
        .create(json!({ "kind": "hook", "hook": "hello", "args": ["ops"] }))
        .await;
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.summary.counts.succeeded, 3, "{:?}", d.nodes);
    assert!(
        f.output(&t.task_id, &ids[1])
            .await
            .stdout
            .starts_with("hello ops from ")
    );
    // A hook the node does not have fails with the reason.
    let t = f
        .create(json!({ "kind": "hook", "hook": "missing-hook" }))
        .await;
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.summary.counts.failed, 3);
    assert!(
        d.nodes[0].error.contains("missing-hook"),
        "{:?}",
        d.nodes[0]
    );

    // Resource limits and run-as: a busy loop dies of its CPU limit (SIGXCPU or SIGKILL); a
    // command runs as another user when the agent is root.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "while :; do :; done\n",
            "cpu_limit_secs": 1,
            "timeout_secs": 30,
            "targets": { "node_ids": [ids[0]] },
        }))
        .await;
    let d = f.finished(&t.task_id).await;
    let n = &d.nodes[0];
    assert_eq!(n.state, "failed", "{n:?}");
    assert!(
        matches!(n.signal, Some(9) | Some(24)),
        "killed by its CPU limit: {n:?}"
    );
    if nerve_agent::tasks::process::is_root() {
        let t = f
            .create(json!({
                "kind": "command",
                "argv": ["id", "-un"],
                "run_as": "nobody",
                "working_dir": "/",
                "targets": { "node_ids": [ids[0]] },
            }))
            .await;
        let d = f.finished(&t.task_id).await;
        assert_eq!(d.nodes[0].state, "succeeded", "{:?}", d.nodes[0]);
        assert_eq!(f.output(&t.task_id, &ids[0]).await.stdout, "nobody\n");
    }

    // Live output: chunks as they come, then the end, over server-sent events.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "echo first\nsleep 1\necho second >&2\n",
            "targets": { "node_ids": [ids[0]] },
        }))
        .await;
    let request = Request::get(format!(
        "/api/v1/tasks/{}/nodes/{}/output/live",
        t.task_id, ids[0]
    ))
    .header("authorization", format!("Bearer {}", f.app.token))
    .body(Body::empty())
    .expect("request");
    let response = f
        .app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(
        DEADLINE,
        axum::body::to_bytes(response.into_body(), 1 << 20),
    )
    .await
    .expect("the stream ends with the task")
    .expect("body");
    let body = String::from_utf8_lossy(&body);
    let first = body.find(r#""data":"first\n""#).expect(&body);
    let second = body.find(r#""data":"second\n""#).expect(&body);
    assert!(first < second, "{body}");
    assert!(
        body.contains("event: end") && body.contains(r#""state":"succeeded""#),
        "{body}"
    );

    // A rollout one node at a time (33 % of 3): each starts only after the previous one finished.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "sleep 0.3\n",
            "batch_percent": 33,
        }))
        .await;
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.summary.counts.succeeded, 3, "{:?}", d.nodes);
    // task_events is written right after the ledger: wait for all six steps.
    let steps: Vec<(String, String, u64)> =
        eventually(DEADLINE, "six start/finish events", || async {
            let steps: Vec<(String, String, u64)> = f
                .env
                .ch
                .query(
                    "SELECT node_id, kind, ts_ms FROM task_events WHERE task_id = ? \
                 AND kind IN ('TaskStarted', 'TaskFinished') ORDER BY ts_ms, stream_seq",
                )
                .bind(&t.task_id)
                .fetch_all()
                .await
                .ok()?;
            (steps.len() == 6).then_some(steps)
        })
        .await;
    let kinds: Vec<&str> = steps.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "TaskStarted",
            "TaskFinished",
            "TaskStarted",
            "TaskFinished",
            "TaskStarted",
            "TaskFinished"
        ],
        "batches overlapped: {steps:?}"
    );

    // Output over the limit is cut at the limit and flagged.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "head -c 300000 /dev/zero | tr '\\000' x\n",
            "max_output_bytes": 1000,
            "targets": { "node_ids": [ids[0]] },
        }))
        .await;
    let d = f.finished(&t.task_id).await;
    let n = &d.nodes[0];
    assert_eq!(
        (n.state.as_str(), n.truncated, n.output_bytes),
        ("succeeded", true, 300_000)
    );
    let out = f.output(&t.task_id, &ids[0]).await;
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated && out.stdout.bytes().all(|b| b == b'x'));

    // A timeout kills the whole process tree, not just the shell.
    let pid_file = f.env.state_dir.path().join("background.pid");
    let t = f
        .create(json!({
            "kind": "script",
            "script": format!("sleep 300 &\necho $! > {}\nsleep 300\n", pid_file.display()),
            "timeout_secs": 2,
            "targets": { "node_ids": [ids[0]] },
        }))
        .await;
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.nodes[0].state, "timed_out", "{:?}", d.nodes[0]);
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let alive = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false);
    assert!(
        !alive,
        "the background sleep {} survived the timeout",
        pid.trim()
    );

    // Cancel mid-run.
    let t = f
        .create(json!({
            "kind": "script",
            "script": "echo started\nsleep 300\n",
            "targets": { "node_ids": [ids[1]] },
        }))
        .await;
    eventually(DEADLINE, "the task running with output", || async {
        let d = f.detail(&t.task_id).await?;
        let out = f.output(&t.task_id, &ids[1]).await;
        (d.nodes.first()?.state == "running" && out.stdout == "started\n").then_some(())
    })
    .await;
    let (status, json) = call(
        &f.app,
        Method::DELETE,
        &format!("/api/v1/tasks/{}", t.task_id),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let d = f.finished(&t.task_id).await;
    assert_eq!(d.nodes[0].state, "cancelled");
    // The request itself is in the history (written just after the ledger).
    eventually(DEADLINE, "the cancel request recorded", || async {
        f.detail(&t.task_id).await?.cancel_requested.then_some(())
    })
    .await;

    // One agent stops: its line ends `unreachable`, the others succeed, and the ledger adds up.
    let (gone, mut child) = f.agents.remove(2);
    signal(&mut child, "-TERM").await;
    let t = f
        .create(json!({
            "kind": "command",
            "argv": ["true"],
            "accept_deadline_secs": 3,
            "targets": { "node_ids": ids, "status": ["online", "suspect", "offline"] },
        }))
        .await;
    let d = f.finished(&t.task_id).await;
    let c = &d.summary.counts;
    assert_eq!((c.succeeded, c.unreachable), (2, 1), "{:?}", d.nodes);
    assert_eq!(c.done(), d.summary.expected);
    let lost = d
        .nodes
        .iter()
        .find(|n| n.node_id == gone)
        .expect("stopped node");
    assert_eq!(
        (lost.state.as_str(), lost.error.as_str()),
        ("unreachable", "offline")
    );
    assert!(lost.attempts >= 2, "retried until the deadline: {lost:?}");

    // The list shows them all, newest first, through the seed's alias too.
    let (status, list) = call(&f.app, Method::GET, "/api/tasks?limit=3", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let expected_total = if nerve_agent::tasks::process::is_root() {
        12
    } else {
        11
    };
    assert_eq!(list["total"], expected_total);
    assert_eq!(list["tasks"][0]["task_id"], t.task_id.as_str());

    for (_, mut child) in f.agents.drain(..) {
        signal(&mut child, "-TERM").await;
    }
    signal(&mut f.project, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_task_requests_are_400_with_the_reason() {
    let env = Env::start().await;
    let app = env.app().await;
    let cases = [
        (json!({}), "kind is required"),
        (json!({"kind": "teleport"}), "unknown kind"),
        (json!({"kind": "command"}), "argv must name a program"),
        (json!({"kind": "script", "script": "  "}), "body is empty"),
        (
            json!({"kind": "hook", "hook": "../../bin/sh"}),
            "not a hook name",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "timeout_secs": 0}),
            "timeout_secs",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "max_output_bytes": 1u64 << 40}),
            "max_output_bytes",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "env": {"1BAD": "x"}}),
            "not a variable name",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "batch_percent": 0}),
            "batch_percent",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "batch_size": 2, "batch_percent": 10}),
            "not both",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "targets": {"labels": ["Bad Key=1"]}}),
            "targets.labels",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "targets": {"clusters": ["nowhere"]}}),
            "unknown cluster",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": ["ghost-1"]}}),
            "unknown nodes: ghost-1",
        ),
        (
            json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": ["bad id"]}}),
            "invalid node id",
        ),
        (
            json!({"kind": "command", "argv": ["true"]}),
            "no node matches",
        ),
    ];
    for (body, reason) in cases {
        let (status, json) = call(&app, Method::POST, "/api/v1/tasks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {json}");
        assert_eq!(json["error"]["code"], "bad_request");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{body} → {message}");
    }
    // Malformed JSON, unknown and malformed task ids.
    let request = Request::post("/api/v1/tasks")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from("{not json"))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = call(&app, Method::GET, "/api/v1/tasks/not-a-uuid", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d";
    let (status, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/tasks/{unknown}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/tasks/{unknown}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A task request lists its expected nodes: one for 100,000 nodes (≈ 3.7 MB) must fit in the
/// event log, and the projector must fold every node's ledger line from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_request_for_100k_nodes_fits_in_the_event_log() {
    use nerve_schemas::{Envelope, TaskRequested, TaskSelector, TaskSpec, subjects};
    let env = Env::start().await;
    let task_id = uuid::Uuid::now_v7().to_string();
    let nodes: Vec<String> = (0..100_000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let request = TaskRequested {
        envelope: Envelope::new::<TaskRequested>(task_id.clone(), nerve_platform::now_ms()),
        task_id: task_id.clone(),
        requested_by: "test".into(),
        spec: TaskSpec {
            kind: "command".into(),
            argv: vec!["true".into()],
            timeout_secs: 10,
            max_output_bytes: 1024,
            ..TaskSpec::default()
        },
        selector: TaskSelector::default(),
        expected_nodes: nodes,
        batch_size: 0,
        accept_deadline_secs: 1,
    };
    let size = nerve_schemas::encode(&request).expect("encode").len();
    assert!(size > 3_000_000, "{size} bytes");
    crate::support::publish_event(&env.js, subjects::task_request(&task_id), &request).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let projectors = env.spawn_projectors(&Registry::new(), &cancel);
    eventually(Duration::from_secs(60), "100,000 ledger lines", || async {
        let n = env
            .count(&format!(
                "SELECT count() FROM task_nodes WHERE task_id = '{task_id}'"
            ))
            .await;
        (n == 100_000).then_some(())
    })
    .await;
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
