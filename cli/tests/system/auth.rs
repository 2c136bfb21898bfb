//! Trust at the API: the route × role matrix generated from the router's own policy table,
//! every audited call exactly once with its actor and source, revocation and expiry seen by a
//! second instance, the audit chain verified (and a forged entry found) by `nerve audit
//! verify`, a change refused with nothing changed while the audit stream is gone, and the first
//! admin token written by `nerve serve` and used by `nerve token`.

use std::time::Duration;

use axum::http::Method;
use nerve_api::dto::auth::{Right, Role};
use nerve_api::http::ROUTES;
use nerve_platform::testkit::eventually;
use nerve_schemas::{AuditEvent, subjects};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{
    DEADLINE, Env, heartbeat, inventory, issue_token, publish_heartbeat, publish_inventory,
    stored_messages,
};

/// A real listener over the API (so calls carry a peer address); its base URL.
async fn listen(app: axum::Router, cancel: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(nerve_api::serve(listener, app, cancel.clone()));
    base
}

async fn send(base: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{base}{path}"))
        .header("user-agent", "auth-matrix");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method != Method::GET {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("send");
    response.status().as_u16()
}

/// Every audit entry on the stream, in order.
async fn audit_entries(env: &Env) -> Vec<nerve_schemas::AuditRecorded> {
    stored_messages(&env.js, nerve_ingest::AUDIT_STREAM, None)
        .await
        .iter()
        .map(|(_, payload)| {
            let AuditEvent::AuditRecorded(entry) =
                AuditEvent::decode(payload).expect("audit entry");
            entry
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_by_the_policy_and_every_change_is_audited_once() {
    let env = Env::start().await;
    let cancel = CancellationToken::new();
    let metrics = nerve_platform::metrics::Registry::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let api = env.app().await;
    let base = listen(api.router.clone(), &cancel).await;
    let viewer = issue_token(&api.state, "vera", Role::Viewer).await;
    let operator = issue_token(&api.state, "otto", Role::Operator).await;
    let admin = api.token.clone();

    // Real ids for every path parameter, so a permitted read answers 200.
    let now = nerve_platform::now_ms();
    publish_inventory(&env.js, &inventory("n1", "host-1", now)).await;
    publish_heartbeat(&env.js, &heartbeat("n1", now, 1)).await;
    eventually(DEADLINE, "n1 stored", || async {
        (env.count("SELECT count() FROM node_state WHERE node_id = 'n1'")
            .await
            > 0)
        .then_some(())
    })
    .await;
    let (_, cluster) = crate::support::call(
        &api,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "pool-a"}),
    )
    .await;
    let cluster = cluster["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_owned();
    let (_, task) = crate::support::call(
        &api,
        Method::POST,
        "/api/v1/tasks",
        json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": ["n1"]}}),
    )
    .await;
    let task = task["task_id"].as_str().expect("task id").to_owned();
    let (_, rule) = crate::support::call(
        &api,
        Method::POST,
        "/api/v1/alerts/rules",
        json!({"name": "hot", "kind": "threshold", "metric": "cpu_pct", "threshold": 95.0, "for_secs": 0}),
    )
    .await;
    let rule = rule["id"].as_str().expect("rule id").to_owned();
    let (_, policy) = crate::support::call(
        &api,
        Method::POST,
        "/api/v1/remediation/policies",
        json!({"name": "cordon-79", "trigger": "xid", "xid_codes": [79], "steps": [{"action": "cordon"}]}),
    )
    .await;
    let policy = policy["id"].as_str().expect("policy id").to_owned();
    eventually(DEADLINE, "fixtures projected", || async {
        let c = env.count("SELECT count() FROM cluster_log").await;
        let t = env.count("SELECT count() FROM tasks").await;
        let r = env.count("SELECT count() FROM alert_rules").await;
        let p = env.count("SELECT count() FROM remediation_policies").await;
        (c > 0 && t > 0 && r > 0 && p > 0).then_some(())
    })
    .await;
    let path_of = |route: &str| {
        route
            .replace("{id}/nodes/{node}", &format!("{task}/nodes/n1"))
            .replace("/clusters/{id}", &format!("/clusters/{cluster}"))
            .replace("/nodes/{id}", "/nodes/n1")
            .replace("/tasks/{id}", &format!("/tasks/{task}"))
            .replace("/rules/{id}", &format!("/rules/{rule}"))
            .replace("/policies/{id}", &format!("/policies/{policy}"))
            .replace("{node}", "n1")
            .replace("{id}", "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d")
    };

    let before = audit_entries(&env).await.len();
    let mut audited = Vec::new(); // (method, route, actor name) of every call that must be audited
    let skip = |route: &str| route.ends_with("/output/live") || route.contains("{*rest}");
    for r in ROUTES.iter().filter(|r| !skip(r.rule.route)) {
        let (method, route, right) = (r.method, r.rule.route, r.rule.right);
        let path = path_of(route);
        let mutation = method != "GET";
        if right == Right::Public {
            // A public change (a node's renewal) proves who calls in its body: none, no answer.
            let expected = if mutation { 400 } else { 200 };
            assert_eq!(
                send(&base, method, &path, None).await,
                expected,
                "{method} {route}"
            );
            continue;
        }
        let status = send(&base, method, &path, None).await;
        assert_eq!(status, 401, "{method} {route} without a token");
        audited.push((method, route, String::new()));
        for (token, name, role) in [
            (&viewer, "vera", Role::Viewer),
            (&operator, "otto", Role::Operator),
            (&admin, "test-admin", Role::Admin),
        ] {
            // Deleting the fixtures would change what later rows see: their deletes are
            // checked on unknown ids instead.
            let path = if mutation && (method == "DELETE" || method == "PATCH" || method == "PUT") {
                route
                    .replace("{node}", "n1")
                    .replace("/nodes/{id}", "/nodes/n1")
                    .replace("{id}", "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d")
            } else {
                path.clone()
            };
            let status = send(&base, method, &path, Some(token)).await;
            if !role.allows(right) {
                assert_eq!(status, 403, "{method} {route} as {name}");
                audited.push((method, route, name.to_owned()));
            } else {
                assert!(
                    status != 401 && status != 403,
                    "{method} {route} as {name}: {status}"
                );
                if mutation {
                    audited.push((method, route, name.to_owned()));
                } else {
                    assert_eq!(status, 200, "{method} {route} as {name}");
                }
            }
        }
    }
    let entries = eventually(DEADLINE, "every audit entry", || async {
        let all = audit_entries(&env).await;
        (all.len() >= before + audited.len()).then_some(all)
    })
    .await;
    let entries = &entries[before..];
    assert_eq!(
        entries.len(),
        audited.len(),
        "exactly one entry per audited call"
    );
    for (entry, (method, route, actor)) in entries.iter().zip(&audited) {
        assert_eq!(
            (
                entry.method.as_str(),
                entry.route.as_str(),
                entry.actor_name.as_str()
            ),
            (*method, *route, actor.as_str())
        );
        assert!(entry.peer.starts_with("127.0.0.1:"), "{entry:?}");
        assert_eq!(entry.user_agent, "auth-matrix");
        let expected = if matches!(entry.status, 401 | 403) {
            "denied"
        } else {
            ""
        };
        if !expected.is_empty() {
            assert_eq!(entry.outcome, expected);
        }
    }
    // The "who" of a change is the token's identity.
    let who = env
        .ch
        .query("SELECT requested_by FROM cluster_log WHERE kind = 'ClusterCreated' LIMIT 1")
        .fetch_one::<String>()
        .await
        .expect("cluster_log");
    assert!(who.starts_with("test-admin/"), "{who}");

    // The chain verifies; a forged entry is found, by the library and by `nerve audit verify`.
    let report = nerve_api::audit::verify(&env.js).await.expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
            .args(["audit", "verify"])
            .env("NERVE_NATS__URL", env.nats.url())
            .output()
            .expect("nerve audit verify")
    };
    assert!(verify().status.success());
    let mut forged = entries[0].clone();
    forged.actor_name = "someone-else".into();
    forged.envelope.event_id = uuid::Uuid::now_v7().to_string();
    crate::support::publish_event(&env.js, subjects::audit(&forged.instance_id), &forged).await;
    let report = nerve_api::audit::verify(&env.js).await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("hash does not match")),
        "{:?}",
        report.problems
    );
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN"));

    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_another_instance_within_5_s_and_expired_tokens_are_refused() {
    let env = Env::start().await;
    let a = env.app().await;
    let b = env.app().await;
    let token = issue_token(&a.state, "temp", Role::Operator).await;
    let me = |api: &crate::support::Api, token: &str| {
        let api = api.with_token(token);
        async move { crate::support::call(&api, Method::GET, "/api/v1/me", Value::Null).await }
    };
    eventually(DEADLINE, "instance b knows the token", || async {
        (me(&b, &token).await.0 == 200).then_some(())
    })
    .await;
    let id = &token["nerve_".len().."nerve_".len() + 16];
    let (status, _) = crate::support::call(
        &a,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(5),
        "instance b refuses the revoked token",
        || async { (me(&b, &token).await.0 == 401).then_some(()) },
    )
    .await;

    // A token that expires in a second works, then is refused.
    let (status, issued) = crate::support::call(
        &a,
        Method::POST,
        "/api/v1/tokens",
        json!({"name": "brief", "role": "viewer", "ttl_secs": 1}),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let brief = issued["token"].as_str().expect("token").to_owned();
    assert_eq!(me(&a, &brief).await.0, 200);
    eventually(
        Duration::from_secs(5),
        "the expired token refused",
        || async {
            let (status, body) = me(&a, &brief).await;
            (status == 401 && body["error"]["code"] == "unauthorized").then_some(())
        },
    )
    .await;
    // Listing never shows a secret.
    let (_, list) = crate::support::call(&a, Method::GET, "/api/v1/tokens", Value::Null).await;
    assert!(!list.to_string().contains(&brief[24..]));
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|t| t["state"] == "revoked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_stream_gone_a_change_is_refused_and_nothing_changes() {
    let env = Env::start().await;
    let api = env.app().await;
    let control = || async {
        env.js
            .get_stream(nerve_ingest::CONTROL_STREAM)
            .await
            .expect("control")
            .info()
            .await
            .expect("info")
            .state
            .messages
    };
    let before = control().await;
    env.js
        .delete_stream(nerve_ingest::AUDIT_STREAM)
        .await
        .expect("delete the audit stream");
    let (status, body) = crate::support::call(
        &api,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "ghost"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was changed")
    );
    assert_eq!(control().await, before, "no control event was written");
    // Reads still work.
    assert_eq!(
        crate::support::call(&api, Method::GET, "/api/v1/clusters", Value::Null)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_the_first_admin_token_and_nerve_token_uses_it() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("admin.token");
    let port = nerve_platform::services::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let file_text = file.display().to_string();
    let _serve = env.spawn_nerve_with(
        &["serve"],
        &[
            ("NERVE_API__LISTEN_ADDR", addr.as_str()),
            ("NERVE_API__ADMIN_TOKEN_FILE", file_text.as_str()),
        ],
    );
    let token = eventually(DEADLINE, "the admin token file", || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Its issue is in the audit trail, and the secret in no stream.
    let issued = eventually(DEADLINE, "the bootstrap audited", || async {
        stored_messages(&env.js, nerve_ingest::AUDIT_STREAM, None)
            .await
            .iter()
            .find_map(|(_, payload)| match AuditEvent::decode(payload) {
                Ok(AuditEvent::AuditRecorded(e)) if e.method == "BOOTSTRAP" => Some(e),
                _ => None,
            })
    })
    .await;
    assert!(token.contains(&issued.actor_token_id));
    let secret = token.trim().rsplit('_').next().expect("secret");
    for stream in [nerve_ingest::AUTH_STREAM, nerve_ingest::AUDIT_STREAM] {
        for (_, payload) in stored_messages(&env.js, stream, None).await {
            assert!(
                !payload
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "the token's secret is in {stream}"
            );
        }
    }
    let base = format!("http://{addr}");
    let me: Value = eventually(DEADLINE, "the API up", || async {
        reqwest::Client::new()
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(token.trim())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    })
    .await;
    assert_eq!(me["role"], "admin");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["token", "--api", &base, "--token-file", &file_text])
        .args([
            "create", "--name", "ci", "--role", "operator", "--ttl", "1h",
        ])
        .envs(env.child_env())
        .output()
        .expect("nerve token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(created["role"], "operator");
    assert!(
        created["token"]
            .as_str()
            .expect("token")
            .starts_with("nerve_")
    );
}
