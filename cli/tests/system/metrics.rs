//! Prometheus from every role: `nerve project` and `nerve agent` serve `/metrics` on
//! `metrics.listen_addr`, `nerve serve` on its API port; each scrape parses with Prometheus'
//! own OpenMetrics parser (Python `prometheus_client`) and carries the latency histograms of
//! its role; every family scraped, and every metric the Grafana dashboards query, is listed in
//! `docs/metrics.md`, and every metric listed there exists in the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nerve_platform::services::free_port;
use nerve_platform::testkit::eventually;

use crate::support::{DEADLINE, Env, get_ok, heartbeat, publish_heartbeat, sample};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `nerve_…` names in `text`, with the suffixes of a family's samples taken off (`_total`,
/// `_bucket`, `_count`, `_sum`), so that a metric and its family compare equal.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("nerve_") {
        let start = i + at;
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
            .map_or(bytes.len(), |n| start + n);
        let mut name = &text[start..end];
        for suffix in ["_total", "_bucket", "_count", "_sum"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        out.insert(name.to_owned());
        i = end;
    }
    out
}

/// The metric families of an OpenMetrics text, as Prometheus' parser reads it (it fails on
/// anything malformed).
async fn families(text: &str) -> BTreeSet<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(nerve_platform::services::tools_python())
        .args([
            "-c",
            "import sys, json\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
             print(json.dumps(sorted({f.name for f in parse(sys.stdin.read())})))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("python");
    assert!(
        out.status.success(),
        "the parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<String>>(&out.stdout)
        .expect("names")
        .into_iter()
        .collect()
}

/// `GET url` until `ready(text)` holds: the text and its content type.
async fn scrape_until(url: &str, what: &str, ready: impl Fn(&str) -> bool) -> (String, String) {
    eventually(DEADLINE, what, || async {
        let response = reqwest::get(url).await.ok()?;
        let kind = response
            .headers()
            .get("content-type")?
            .to_str()
            .ok()?
            .to_owned();
        let text = response.text().await.ok()?;
        ready(&text).then_some((text, kind))
    })
    .await
}

fn documented() -> BTreeSet<String> {
    metric_names(&std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_parseable_documented_metrics_with_its_latencies() {
    let env = Env::start().await;
    let doc = documented();
    let [project_port, agent_port] = [free_port(), free_port()].map(|p| p.expect("port"));
    let project_addr = format!("127.0.0.1:{project_port}");
    let _project = env.spawn_nerve_with(
        &["project"],
        &[("NERVE_METRICS__LISTEN_ADDR", &project_addr)],
    );
    let agent_addr = format!("127.0.0.1:{agent_port}");
    let _agent = env.spawn_nerve_with(
        &["agent"],
        &[
            ("NERVE_METRICS__LISTEN_ADDR", &agent_addr),
            ("NERVE_AGENT__GPU", "false"),
            ("NERVE_AGENT__TASK_SCOPE", "none"),
        ],
    );
    publish_heartbeat(&env.js, &heartbeat("m1", nerve_platform::now_ms(), 1)).await;

    // nerve project: its projectors timed a heartbeat from publish to store, and a batch write.
    let latency = "nerve_projector_publish_to_store_seconds_count{projection=\"proj_heartbeats\"}";
    let write = "nerve_projector_batch_write_seconds_count{projection=\"proj_heartbeats\"}";
    let (project, kind) = scrape_until(
        &format!("http://{project_addr}/metrics"),
        "the projector's publish→store latency and batch write time",
        |t| sample(t, latency) >= 1.0 && sample(t, write) >= 1.0,
    )
    .await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(sample(&project, write) >= 1.0, "{project}");
    // nerve agent: what it published.
    let (agent, _) = scrape_until(
        &format!("http://{agent_addr}/metrics"),
        "the agent's published events",
        |t| sample(t, "nerve_agent_events_published_total") >= 1.0,
    )
    .await;
    // nerve project's dispatcher: a task offered to the agent, accepted and timed.
    let app = env.app().await;
    let node = env.node_of(&env.config.agent.state_dir).await;
    let (status, body) = crate::support::call(
        &app,
        axum::http::Method::POST,
        "/api/v1/tasks",
        serde_json::json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": [node]}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (project, _) = scrape_until(
        &format!("http://{project_addr}/metrics"),
        "the task's dispatch timed",
        |t| {
            sample(t, "nerve_dispatch_seconds_count") >= 1.0
                && sample(t, "nerve_dispatch_accepted_total") >= 1.0
        },
    )
    .await;
    // nerve serve's /metrics: each request timed under its route's pattern.
    get_ok(&app, "/api/v1/nodes").await;
    get_ok(&app, "/api/v1/nodes/m1").await;
    let (status, _) = crate::support::call(
        &app,
        axum::http::Method::GET,
        "/api/v1/nodes?limit=nope",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 400);
    // A refused token is counted by reason.
    let (status, _) = crate::support::call(
        &app.with_token("nerve_unknown_secret"),
        axum::http::Method::GET,
        "/api/v1/me",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 401);
    let api = app.state.metrics().render();
    assert!(
        sample(&api, "nerve_api_auth_failures_total{") >= 1.0,
        "{api}"
    );
    for line in [
        "nerve_api_request_duration_seconds_count{route=\"/api/v1/nodes\",method=\"GET\",status=\"2xx\"} 1",
        "nerve_api_request_duration_seconds_count{route=\"/api/v1/nodes/{id}\",method=\"GET\",status=\"2xx\"} 1",
        "nerve_api_request_duration_seconds_count{route=\"/api/v1/nodes\",method=\"GET\",status=\"4xx\"} 1",
    ] {
        assert!(api.contains(line), "{line}\n{api}");
    }

    for (role, text) in [("project", &project), ("agent", &agent), ("serve", &api)] {
        let found = families(text).await;
        assert!(!found.is_empty(), "{role}: {text}");
        let undocumented: Vec<_> = found.iter().filter(|f| !doc.contains(*f)).collect();
        assert!(
            undocumented.is_empty(),
            "{role}: not in docs/metrics.md: {undocumented:?}"
        );
    }
}

#[test]
fn the_dashboards_query_documented_metrics_and_the_docs_list_real_ones() {
    let doc = documented();
    let mut queried = BTreeSet::new();
    for name in ["ingest", "api", "fleet"] {
        let path = repo().join(format!("infra/grafana/{name}.json"));
        let dashboard: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("dashboard")).expect("JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}");
        for panel in panels {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let names = metric_names(expr);
                assert!(!names.is_empty(), "{name}: {expr}");
                queried.extend(names);
            }
        }
    }
    let missing: Vec<_> = queried.iter().filter(|m| !doc.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboards query undocumented metrics: {missing:?}"
    );

    // Every documented metric is registered somewhere in the code.
    let mut code = String::new();
    for dir in [
        "agent",
        "alerts",
        "api",
        "bridge",
        "dispatch",
        "ingest",
        "liveness",
        "projections",
        "remediation",
    ] {
        let out = std::process::Command::new("grep")
            .args(["-rhoE", "\"nerve_[a-z0-9_]+\"", "--include=*.rs"])
            .arg(repo().join(dir).join("src"))
            .output()
            .expect("grep");
        code.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let in_code = metric_names(&code);
    let stale: Vec<_> = doc.iter().filter(|m| !in_code.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "documented but not in the code: {stale:?}"
    );
}
