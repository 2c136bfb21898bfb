//! `nerve dev` as a user starts it: its own NATS and ClickHouse under a data dir, and everything
//! secured by default — the API over HTTPS with tokens (the first admin token in a 0600 file),
//! NATS with TLS and per-identity credentials (no anonymous client), the local agent enrolled
//! like any node and heartbeating, its enrollment in the audit trail; the default remediation
//! policies act on an XID (the node, with no drain hook, ends marked for service); the k6
//! scripts run against it without a failed check — and a clean stop.

use std::process::Stdio;
use std::time::Duration;

use nerve_platform::services::free_port;
use nerve_platform::testkit::eventually;

use crate::support::signal;

const START: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nerve_dev_runs_secured_with_its_agent_enrolled() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let ports = [free_port(), free_port(), free_port()].map(|p| p.expect("port"));
    let nats_url = format!("nats://127.0.0.1:{}", ports[0]);
    let api = format!("127.0.0.1:{}", ports[2]);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_nerve"));
    nerve_platform::services::die_with_parent(&mut cmd);
    let mut dev = cmd
        .arg("dev")
        .env("NERVE_DEV__DATA_DIR", &data)
        .env("NERVE_NATS__URL", &nats_url)
        .env(
            "NERVE_CLICKHOUSE__URL",
            format!("http://127.0.0.1:{}", ports[1]),
        )
        .env("NERVE_API__LISTEN_ADDR", &api)
        .env("NERVE_AGENT__HEARTBEAT_INTERVAL_SECS", "1")
        .env(
            "RUST_LOG",
            "warn,nerve_remediation=debug,nerve_dispatch=debug",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn nerve dev");

    let (ca, token_file) = (data.join("tls/ca.pem"), data.join("admin.token"));
    let admin = eventually(START, "the first admin token", || async {
        std::fs::read_to_string(&token_file)
            .ok()
            .filter(|t| !t.trim().is_empty())
    })
    .await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read(&ca).expect("the local CA");
    let https = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let get = |path: &str| {
        https
            .get(format!("https://{api}/api/v1{path}"))
            .bearer_auth(admin.trim())
            .send()
    };

    // The agent enrolled through the API and heartbeats with its own credentials.
    let node = eventually(
        START,
        "the local agent enrolled and heartbeating",
        || async {
            let credentials: serde_json::Value =
                get("/credentials").await.ok()?.json().await.ok()?;
            let node = credentials.get(0)?;
            (node["state"] == "active").then_some(())?;
            let id = node["node_id"].as_str()?.to_owned();
            let detail = get(&format!("/nodes/{id}")).await.ok()?;
            detail.status().is_success().then_some(id)
        },
    )
    .await;
    eventually(START, "the enrollment in the audit trail", || async {
        let audit: serde_json::Value = get("/audit?action=/api/v1/enroll")
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        audit
            .to_string()
            .contains("\"outcome\":\"applied\"")
            .then_some(())
    })
    .await;

    // Nothing answers in plain text, and NATS takes no anonymous client (each attempt bounded:
    // a refusal may come as an error or as silence).
    let bounded = Duration::from_secs(10);
    let plain =
        tokio::time::timeout(bounded, reqwest::get(format!("http://{api}/api/v1/health"))).await;
    assert!(
        !matches!(&plain, Ok(Ok(r)) if r.status().is_success()),
        "the API answered plain HTTP"
    );
    let anonymous = tokio::time::timeout(
        bounded,
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.clone())
            .connection_timeout(Duration::from_secs(5))
            .connect(&nats_url),
    )
    .await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "an anonymous NATS client is refused"
    );
    let admin_creds = data.join("nats-authority/admin.creds");
    let signed_in = async_nats::ConnectOptions::with_credentials_file(admin_creds)
        .await
        .expect("creds")
        .require_tls(true)
        .add_root_certificates(ca)
        .connection_timeout(Duration::from_secs(5))
        .connect(&nats_url)
        .await
        .expect("the admin's NATS credentials work");
    assert!(!node.is_empty());

    // The default policies: an XID 79 on the agent's node cordons it; this machine has no drain
    // hook, so the ladder stops there and the node is marked for service.
    eventually(START, "the default policies", || async {
        let listed: serde_json::Value =
            get("/remediation/policies").await.ok()?.json().await.ok()?;
        let text = listed.to_string();
        (text.contains("xid-gpu-lost") && text.contains("xid-gpu-reset")).then_some(())
    })
    .await;
    let xid = nerve_schemas::GpuXidOccurred {
        gpu_uuid: "GPU-dev-0".into(),
        ..nerve_schemas::GpuXidOccurred::example(&node, nerve_platform::now_ms())
    };
    nerve_ingest::Outgoing::event(nerve_schemas::subjects::gpu_xid(&node), &xid)
        .expect("encode")
        .publish(&async_nats::jetstream::new(signed_in.clone()))
        .await
        .expect("XID stored");
    let ended = eventually(START, "the default ladder ended", || async {
        let runs: serde_json::Value = get(&format!("/remediation/runs?node={node}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        runs["entries"]
            .as_array()?
            .iter()
            .find(|e| e["kind"] == "run_ended")
            .cloned()
    })
    .await;
    assert_eq!(ended["policy_name"], "xid-gpu-lost", "{ended}");
    assert_eq!(ended["outcome"], "service_required", "{ended}");
    let detail: serde_json::Value = get(&format!("/nodes/{node}"))
        .await
        .expect("detail")
        .json()
        .await
        .expect("json");
    let m = &detail["maintenance"];
    assert_eq!(m["state"], "service_required", "{m}");
    assert!(
        m["history"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("drain"),
        "{m}"
    );
    drop(signed_in);

    // The admin tools' config: a replay of every table against this running system matches,
    // reading the archive `nerve dev` keeps.
    let tools = data.join("tools.toml");
    let perm = std::fs::metadata(&tools).expect("tools.toml").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&perm) & 0o777,
        0o600
    );
    let replay = tokio::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .arg("--config")
        .arg(&tools)
        .args(["replay", "--check"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("nerve replay");
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success() && !out.contains("differ"),
        "{out}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(data.join("archive").is_dir(), "nerve dev archives");

    // The k6 scripts against this system, as an operator runs them (a smoke run: two users for
    // a few seconds; their latency thresholds are for release runs, so only checks count here).
    // (The node list is served from a snapshot up to `api.fleet_snapshot_max_age_ms` old.)
    eventually(START, "the node in the node list", || async {
        let page: serde_json::Value = get("/nodes").await.ok()?.json().await.ok()?;
        (page["total"] == 1).then_some(())
    })
    .await;
    for script in ["nodes.js", "tasks.js"] {
        let summary = dir.path().join(format!("{script}.summary.json"));
        let k6 = tokio::process::Command::new(nerve_platform::services::tools_program("k6"))
            .args(["run", "--quiet", "--no-usage-report", "--no-thresholds"])
            .arg("--summary-export")
            .arg(&summary)
            .arg(format!(
                "{}/../loadtest/k6/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .env("NERVE_URL", format!("https://{api}"))
            .env("NERVE_TOKEN_FILE", &token_file)
            .env("SSL_CERT_FILE", data.join("tls/ca.pem"))
            .env("VUS", "2")
            .env("RAMP", "1s")
            .env("DURATION", "3s")
            .env("THINK_MIN_MS", "0")
            .env("THINK_MAX_MS", "100")
            .output()
            .await
            .expect("k6 runs");
        let said = crate::support::said(&k6);
        assert!(k6.status.success(), "k6 {script}: {said}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
        let checks = &summary["metrics"]["checks"];
        assert_eq!(checks["fails"], 0, "k6 {script}: {checks}\n{said}");
        assert!(checks["passes"].as_u64() > Some(0), "k6 {script}: {checks}");
        assert!(
            summary["metrics"]["http_reqs"]["count"].as_u64() > Some(2),
            "k6 {script}: {summary}"
        );
    }

    let status = signal(&mut dev, "-TERM").await;
    assert!(status.success(), "nerve dev stops cleanly: {status:?}");
}
