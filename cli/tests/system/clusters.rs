//! Clusters and labels end to end: two real agents (one with labels in its config), the real
//! projector process, the API over the real event log. Clusters are created, renamed and
//! deleted; nodes assigned and unassigned; operator labels override the agent's; the node
//! list, node detail and task targets all filter by them; every change is in the control log.

use axum::http::{Method, StatusCode};
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};

use crate::support::{Api, DEADLINE, Env, call, signal};

/// `GET uri` once it answers 200 with a body that satisfies `check`.
async fn until(app: &Api, uri: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(DEADLINE, what, || async {
        let (status, body) = call(app, Method::GET, uri, Value::Null).await;
        eprintln!(
            "DEBUG {uri} {status} {}",
            body.to_string().chars().take(300).collect::<String>()
        );
        (status == StatusCode::OK && check(&body)).then_some(body)
    })
    .await
}

fn node_ids(page: &Value) -> Vec<String> {
    page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_and_labels_organise_nodes_everywhere() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let dirs = tempfile::tempdir().expect("tmp");
    let config = dirs.path().join("labelled.toml");
    std::fs::write(
        &config,
        "[agent]\nlabels = { gpu = \"h100\", rack = \"r1\" }\n",
    )
    .expect("config");
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for (i, args) in [
        vec![
            "--config".to_owned(),
            config.display().to_string(),
            "agent".to_owned(),
        ],
        vec!["agent".to_owned()],
    ]
    .into_iter()
    .enumerate()
    {
        let state = dirs.path().join(format!("agent-{i}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = env.spawn_nerve_with(
            &args,
            &[("NERVE_AGENT__STATE_DIR", &state.display().to_string())],
        );
        let id = env.node_of(&state).await;
        agents.push(child);
        ids.push(id);
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let app = env.app().await;

    // The agent's configured labels.
    until(
        &app,
        &format!("/api/v1/nodes/{a}"),
        "the agent's labels",
        |d| d["labels"] == json!(["gpu=h100", "rack=r1"]),
    )
    .await;

    // A cluster; bad requests explain themselves.
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "training", "description": "H100 pods"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let cluster_id = created["cluster_id"].as_str().expect("id").to_owned();
    until(&app, "/api/v1/clusters", "the cluster listed", |l| {
        l["clusters"][0]["name"] == "training"
    })
    .await;
    for (body, reason) in [
        (json!({"name": "training"}), "exists"),
        (json!({"name": "no spaces"}), "name"),
        (json!({"name": "ok", "colour": "red"}), "unknown field"),
    ] {
        let (status, err) = call(&app, Method::POST, "/api/v1/clusters", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{err}"
        );
    }

    // Membership, by name or id.
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/clusters/training/nodes/{a}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/v1/clusters/training/nodes/ghost",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    until(
        &app,
        &format!("/api/v1/clusters/{cluster_id}"),
        "A in the cluster",
        |c| c["node_ids"] == json!([a]) && c["cluster"]["nodes"] == 1,
    )
    .await;
    let page = until(
        &app,
        "/api/v1/nodes?cluster=training",
        "the cluster filter",
        |p| p["total"] == 1,
    )
    .await;
    assert_eq!(node_ids(&page), vec![a.clone()]);

    // Operator labels: B gets one; A's operator label overrides the agent's for that key.
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/nodes/{b}/labels"),
        json!({"labels": ["gpu=a100"]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/nodes/{a}/labels"),
        json!({"labels": ["rack=r9"]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, err) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/nodes/{a}/labels"),
        json!({"labels": ["Bad Key=x"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let detail = until(
        &app,
        &format!("/api/v1/nodes/{a}"),
        "A's labels merged",
        |d| d["labels"] == json!(["gpu=h100", "rack=r9"]),
    )
    .await;
    assert_eq!(detail["clusters"][0]["name"], "training");
    until(&app, &format!("/api/v1/nodes/{b}"), "B's label", |d| {
        d["labels"] == json!(["gpu=a100"])
    })
    .await;
    let page = until(
        &app,
        "/api/v1/nodes?label=gpu%3Dh100",
        "the label filter",
        |p| p["total"] == 1,
    )
    .await;
    assert_eq!(node_ids(&page), vec![a.clone()]);

    // Task targets by cluster and by label.
    for (targets, expected) in [
        (json!({"clusters": ["training"]}), vec![a.clone()]),
        (json!({"labels": ["gpu=a100"]}), vec![b.clone()]),
        (
            json!({"labels": ["rack=r9"], "clusters": [cluster_id.clone()]}),
            vec![a.clone()],
        ),
    ] {
        let (status, t) = call(
            &app,
            Method::POST,
            "/api/v1/tasks",
            json!({"kind": "command", "argv": ["true"], "targets": targets}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{targets} → {t}");
        assert_eq!(t["expected_nodes"], json!(expected), "{targets}");
    }
    let (status, err) = call(
        &app,
        Method::POST,
        "/api/v1/tasks",
        json!({"kind": "command", "argv": ["true"], "targets": {"clusters": ["nope"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown cluster")
    );

    // Rename, unassign, delete.
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/v1/clusters/training",
        json!({"name": "inference"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    until(
        &app,
        &format!("/api/v1/nodes/{a}"),
        "the new name on the node",
        |d| d["clusters"][0]["name"] == "inference",
    )
    .await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/clusters/inference/nodes/{a}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    until(
        &app,
        "/api/v1/nodes?cluster=inference",
        "nobody left",
        |p| p["total"] == 0,
    )
    .await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/clusters/{cluster_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    until(
        &app,
        "/api/v1/clusters/list",
        "no clusters (the seed's alias)",
        |l| l["clusters"] == json!([]),
    )
    .await;
    let (status, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/clusters/{cluster_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The seed's node aliases; and the log holds every change with who made it.
    for uri in ["/api/v1/agents/list", "/api/discovery/nodes"] {
        let (status, page) = call(&app, Method::GET, uri, Value::Null).await;
        assert_eq!(
            (status, page["total"].clone()),
            (StatusCode::OK, json!(2)),
            "{uri}"
        );
    }
    let log: Vec<(String, String)> = env
        .ch
        .query(
            "SELECT kind, requested_by FROM cluster_log \
             WHERE kind NOT IN ('NodeLabelsSet') ORDER BY stream_seq",
        )
        .fetch_all()
        .await
        .expect("log");
    let kinds: Vec<&str> = log.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ClusterCreated",
            "NodeAssignedToCluster",
            "ClusterRenamed",
            "NodeUnassignedFromCluster",
            "ClusterDeleted"
        ]
    );
    // Who: the caller's token, whatever the request says.
    assert!(
        log.iter().all(|(_, by)| by.starts_with("test-admin/")),
        "{log:?}"
    );

    for mut child in agents {
        signal(&mut child, "-TERM").await;
    }
    signal(&mut project, "-TERM").await;
}
