//! The API against its own OpenAPI document: a real `nerve serve` over a fleet with a node, its
//! `/api/v1/openapi.json` fetched over HTTP, then `schemathesis` (PyPI) fuzzes every operation
//! with an admin token and fails on any 5xx, on any answer the document does not describe
//! (status, content type, headers, body schema), on a method a path does not take answered
//! otherwise than 405, and on a route that answers without its token.

use nerve_platform::testkit::eventually;
use serde_json::Value;

use crate::support::{DEADLINE, Env, heartbeat, inventory, publish_heartbeat, publish_inventory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_lacks() {
    // With NATS auth and node enrollment set up, as in production.
    let env = Env::start_secured().await;
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    // A node with inventory and heartbeats, so reads answer rows, not only empty lists.
    let now = nerve_platform::now_ms();
    publish_inventory(&env.js, &inventory("fuzz-node", "fuzz-host", now)).await;
    publish_heartbeat(&env.js, &heartbeat("fuzz-node", now, 1)).await;
    eventually(DEADLINE, "the node projected", || async {
        (env.count("SELECT count() FROM node_state FINAL").await == 1).then_some(())
    })
    .await;

    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("admin.token");
    // A small stand-in for the agent binary `/download/nerve` serves (the fuzzer fetches it).
    let binary = dir.path().join("nerve-agent");
    std::fs::write(&binary, b"\x7fELF stand-in").expect("binary");
    let addr = format!(
        "127.0.0.1:{}",
        nerve_platform::services::free_port().expect("port")
    );
    let log = dir.path().join("serve.log");
    let _serve = env.spawn_nerve_logged(
        &["serve"],
        &[
            ("NERVE_API__LISTEN_ADDR", addr.as_str()),
            (
                "NERVE_API__ADMIN_TOKEN_FILE",
                &token_file.display().to_string(),
            ),
            ("NERVE_API__AGENT_BINARY", &binary.display().to_string()),
            ("NERVE_API__AGENT_NATS_URL", &env.config.nats.url),
            (
                "NERVE_API__NATS_AUTHORITY_DIR",
                &env.config.api.nats_authority_dir.display().to_string(),
            ),
        ],
        &log,
    );
    let token = eventually(DEADLINE, "the admin token file", || async {
        std::fs::read_to_string(&token_file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let base = format!("http://{addr}");
    let document: Value = eventually(DEADLINE, "the document served", || async {
        let response = reqwest::get(format!("{base}/api/v1/openapi.json"))
            .await
            .ok()?;
        response.json().await.ok()
    })
    .await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert!(document["paths"]["/api/v1/nodes"]["get"].is_object());

    let junit = dir.path().join("junit.xml");
    let run = tokio::process::Command::new(nerve_platform::services::tools_program("st"))
        .args(["run", &format!("{base}/api/v1/openapi.json")])
        .args(["--url", &base])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,unsupported_method,\
             ignored_auth",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "10", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "20", "--no-color"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        // Works around a CPython 3.11 `ast.parse` bug that aborts operations at random (the
        // file says how).
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/system/openapi_hooks.py"),
        )
        // Its cache (`.schemathesis/`) goes to the test's directory, not the checkout.
        .current_dir(dir.path())
        .output()
        .await
        .expect("schemathesis runs");
    let said = crate::support::said(&run);
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{said}\n--- nerve serve's log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // It tested every operation (a run that tested nothing would also pass).
    let junit = std::fs::read_to_string(&junit).expect("the junit report");
    let untested: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            ["get", "put", "post", "patch", "delete"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .filter(|operation| !junit.contains(&format!("name=\"{operation}\"")))
        // Schemathesis leaves out the document's own URL; this test fetched it above.
        .filter(|operation| operation != "GET /api/v1/openapi.json")
        .collect();
    assert!(untested.is_empty(), "not tested: {untested:?}\n{junit}");
}
