//! Remediation end to end: three real agents (hooks: `drain` and `reboot` succeed, `gpu-reset`
//! fails), the real `nerve project` (engine, dispatcher, evaluator), the API. An XID 79 on a
//! node in scope: it is cordoned, the drain hook runs on that agent, the reset fails, the
//! reboot succeeds, the built-in GPU check passes, and the node is back in service — every
//! transition a `NodeMaintenanceChanged` naming the policy and the run, every step in the
//! journal. A dry-run policy acts on nothing and records what it would have done. With a
//! breaker limit of 2, a third node's XID leaves it untouched and the `remediation-breaker`
//! alert fires; an admin's reset lets the next one proceed.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use nerve_platform::testkit::eventually;
use nerve_schemas::{GpuXidOccurred, subjects};
use serde_json::{Value, json};

use crate::support::{Api, Env, call, get_ok, publish_event, signal};

/// How long a ladder of five steps on real agents may take here.
const LADDER: Duration = Duration::from_secs(90);

fn xid(node: &str, code: i64) -> GpuXidOccurred {
    GpuXidOccurred {
        gpu_index: 1,
        gpu_uuid: "GPU-test-1".into(),
        xid: code,
        ..GpuXidOccurred::example(node, nerve_platform::now_ms())
    }
}

/// The journal of `node`, oldest first.
async fn journal(app: &Api, node: &str) -> Vec<Value> {
    let page = get_ok(app, &format!("/api/v1/remediation/runs?node={node}")).await;
    let mut entries = page["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    entries
}

/// The journal of `node` once an entry satisfies `done`.
async fn journal_until(
    app: &Api,
    node: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    eventually(LADDER, what, || async {
        let entries = journal(app, node).await;
        entries.iter().any(&done).then_some(entries)
    })
    .await
}

fn hook(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xid_runs_the_ladder_and_the_breaker_holds_the_third_node() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve_with(
        &["project"],
        &[
            ("NERVE_REMEDIATION__INSTALL_DEFAULTS", "false"),
            ("NERVE_REMEDIATION__POLL_INTERVAL_MS", "200"),
            ("NERVE_REMEDIATION__BREAKER_MAX_NODES", "2"),
            ("NERVE_REMEDIATION__BREAKER_MAX_PCT", "100"),
            ("NERVE_REMEDIATION__TASK_ACCEPT_DEADLINE_SECS", "20"),
            ("NERVE_ALERTS__EVAL_INTERVAL_MS", "300"),
        ],
    );
    let dirs = tempfile::tempdir().expect("tmp");
    let hooks = dirs.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir");
    let marks = dirs.path().join("marks");
    std::fs::create_dir(&marks).expect("mkdir");
    let m = marks.display();
    // A task runs in `<state dir>/tasks/<task id>`; the state dir holds the node's id.
    hook(
        &hooks,
        "drain",
        &format!("echo \"$NERVE_REMEDIATION_CAUSE\" > {m}/drained-$(cat ../../node_id)"),
    );
    hook(
        &hooks,
        "gpu-reset",
        "echo 'nvidia-smi -r: GPU is busy' >&2; exit 1",
    );
    hook(&hooks, "reboot", &format!("touch {m}/rebooted"));
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let state = dirs.path().join(format!("agent-{i}"));
        agents.push(env.spawn_nerve_with(
            &["agent"],
            &[
                ("NERVE_AGENT__STATE_DIR", &state.display().to_string()),
                ("NERVE_AGENT__HOOKS_DIR", &hooks.display().to_string()),
                ("NERVE_AGENT__REGION", "lab"),
            ],
        ));
        ids.push(env.node_of(&state).await);
    }
    let app = env.app().await;
    eventually(LADDER, "every node labelled", || async {
        let page = get_ok(&app, "/api/v1/nodes?label=region%3Dlab").await;
        (page["total"] == 3).then_some(())
    })
    .await;

    // Bad policies explain themselves.
    for (body, needle) in [
        (json!({"name": "x", "trigger": "xid", "steps": []}), "steps"),
        (
            json!({"name": "x", "trigger": "smoke", "steps": [{"action": "cordon"}]}),
            "trigger",
        ),
        (
            json!({"name": "x", "trigger": "xid", "steps": [{"action": "teleport"}]}),
            "action",
        ),
        (
            json!({"name": "x", "trigger": "xid", "steps": [{"action": "notify", "channels": ["nope"]}]}),
            "no channel",
        ),
        (
            json!({"name": "x", "trigger": "xid", "steps": [{"action": "task", "task": {"kind": "command"}}]}),
            "argv",
        ),
        (
            json!({"name": "x", "trigger": "alert", "xid_codes": [79], "steps": [{"action": "cordon"}]}),
            "xid_codes",
        ),
    ] {
        let (status, answer) = call(
            &app,
            Method::POST,
            "/api/v1/remediation/policies",
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.to_string().contains(needle), "{body}: {answer}");
    }
    let ladder = json!({
        "name": "xid-79",
        "trigger": "xid",
        "xid_codes": [79],
        "scope": {"labels": ["region=lab"]},
        "steps": [
            {"action": "cordon"},
            {"action": "task", "stage": "prepare", "task": {"kind": "hook", "hook": "drain"}},
            {"action": "task", "task": {"kind": "hook", "hook": "gpu-reset"}},
            {"action": "task", "task": {"kind": "hook", "hook": "reboot"}},
            {"action": "health_check", "check": "gpu"}
        ]
    });
    let (status, answer) = call(&app, Method::POST, "/api/v1/remediation/policies", ladder).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let dry = json!({
        "name": "dry-48",
        "trigger": "xid",
        "xid_codes": [48],
        "dry_run": true,
        "steps": [{"action": "cordon"}, {"action": "task", "task": {"kind": "hook", "hook": "reboot"}}]
    });
    let (status, answer) = call(&app, Method::POST, "/api/v1/remediation/policies", dry).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let listed = get_ok(&app, "/api/v1/remediation/policies").await;
    assert_eq!(
        listed["policies"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // XID 79 on the first node: the whole ladder.
    let a = ids[0].clone();
    publish_event(&env.js, subjects::gpu_xid(&a), &xid(&a, 79)).await;
    let entries = journal_until(&app, &a, "the ladder ended", |e| e["kind"] == "run_ended").await;
    let steps: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["kind"] == "step_finished")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("cordon", "succeeded"),
        ("task", "succeeded"),
        ("task", "failed"),
        ("task", "succeeded"),
        ("health_check", "succeeded"),
    ]
    .map(|(a, o)| (a.to_owned(), o.to_owned()));
    assert_eq!(steps, expected, "{entries:#?}");
    let end = entries.last().expect("end");
    assert_eq!(end["outcome"], "in_service", "{end}");
    assert!(
        end["cause"].as_str().expect("cause").contains("XID 79"),
        "{end}"
    );
    let run_id = end["run_id"].as_str().expect("run").to_owned();
    let reset_step = entries.iter().find(|e| e["step"] == 2).expect("reset step");
    assert!(
        reset_step["detail"]
            .as_str()
            .expect("detail")
            .contains("exit code 1"),
        "{reset_step}"
    );
    // The drain hook ran on that node's agent, told why; the reboot hook ran.
    let drained = std::fs::read_to_string(marks.join(format!("drained-{a}"))).expect("drained");
    assert!(drained.contains("XID 79"), "{drained}");
    assert!(marks.join("rebooted").exists());
    // Every transition is a maintenance change naming the policy and the run.
    let detail = get_ok(&app, &format!("/api/v1/nodes/{a}")).await;
    let history = detail["maintenance"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let states: Vec<&str> = history
        .iter()
        .rev()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["cordoned", "remediating", "verifying", "in_service"],
        "{history:#?}"
    );
    assert!(
        history
            .iter()
            .all(|h| h["run_id"] == run_id.as_str() && h["requested_by"] == "remediation")
    );
    // The health check's verdict is one of the node's events.
    let events = detail["events"].to_string();
    assert!(events.contains("health check gpu: pass"), "{events}");

    // A dry run on the second node acts on nothing.
    let b = ids[1].clone();
    publish_event(&env.js, subjects::gpu_xid(&b), &xid(&b, 48)).await;
    let entries = journal_until(&app, &b, "the dry run recorded", |e| {
        e["kind"] == "run_ended"
    })
    .await;
    assert!(entries.iter().all(|e| e["dry_run"] == true), "{entries:#?}");
    let would: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "step_finished")
        .map(|e| e["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(would, ["would_run", "would_run"]);
    assert!(
        entries.iter().any(|e| e["detail"] == "run hook reboot"),
        "{entries:#?}"
    );
    assert_eq!(entries.last().expect("end")["outcome"], "dry_run");
    let detail = get_ok(&app, &format!("/api/v1/nodes/{b}")).await;
    assert_eq!(detail["maintenance"]["state"], "in_service");
    assert_eq!(detail["maintenance"]["history"], json!([]));

    // The breaker: the first node's run counted; the second is admitted, the third is held.
    publish_event(&env.js, subjects::gpu_xid(&b), &xid(&b, 79)).await;
    journal_until(&app, &b, "the second run ended", |e| {
        e["kind"] == "run_ended" && e["dry_run"] == false
    })
    .await;
    let c = ids[2].clone();
    publish_event(&env.js, subjects::gpu_xid(&c), &xid(&c, 79)).await;
    let entries = journal_until(&app, &c, "the third held", |e| e["kind"] == "held").await;
    assert!(
        entries.iter().any(|e| e["kind"] == "breaker_tripped"),
        "{entries:#?}"
    );
    assert!(
        !entries.iter().any(|e| e["kind"] == "run_started"),
        "{entries:#?}"
    );
    let detail = get_ok(&app, &format!("/api/v1/nodes/{c}")).await;
    assert_eq!(
        detail["maintenance"]["history"],
        json!([]),
        "the held node is untouched"
    );
    let breaker = get_ok(&app, "/api/v1/remediation/breaker").await;
    assert_eq!(breaker["open"], true, "{breaker}");
    eventually(LADDER, "the breaker alert firing", || async {
        let alerts = get_ok(&app, "/api/v1/alerts").await;
        alerts["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["rule_name"] == "remediation-breaker")
            .then_some(())
    })
    .await;

    // An admin resets it (an operator may not); the next XID proceeds.
    let ops = app.with_token(
        &crate::support::issue_token(&app.state, "ops", nerve_api::dto::auth::Role::Operator).await,
    );
    let reset = json!({"reason": "one bad rack, fixed"});
    let (status, _) = call(
        &ops,
        Method::POST,
        "/api/v1/remediation/breaker/reset",
        reset.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = call(
        &app,
        Method::POST,
        "/api/v1/remediation/breaker/reset",
        reset,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        get_ok(&app, "/api/v1/remediation/breaker").await["open"],
        false
    );
    publish_event(&env.js, subjects::gpu_xid(&c), &xid(&c, 79)).await;
    let entries = journal_until(&app, &c, "the next run ended", |e| e["kind"] == "run_ended").await;
    assert_eq!(
        entries.last().expect("end")["outcome"],
        "in_service",
        "{entries:#?}"
    );

    for mut agent in agents {
        signal(&mut agent, "-TERM").await;
    }
    signal(&mut project, "-TERM").await;
}
