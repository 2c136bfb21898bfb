//! The console in real headless Chromium (via ChromeDriver) against a running system: a real
//! agent process plus simulated nodes. Signing in with a token (a wrong one is explained, a
//! viewer is offered no changes, server functions refuse other origins and form bodies). Every
//! page must hydrate without console errors; search,
//! status filter, sort and pagination work by clicks; node detail shows the real node's
//! inventory and charts with data; a stopped agent turns offline on screen. Screenshots of every
//! page go to `artifacts/screenshots/` (not committed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use nerve_schemas::{Envelope, GpuHealthReason, GpuSample, GpuXidOccurred, subjects};

use nerve_api::dto::auth::Role;

use crate::support::{
    DEADLINE, Env, heartbeat, inventory, issue_token, publish_event, publish_heartbeat,
    publish_inventory, publish_went_offline,
};

/// The simulated node with GPUs: one healthy, one that fell off the bus (XID 79).
const GPU_NODE: usize = 1;

fn gpu_samples() -> Vec<GpuSample> {
    let ok = GpuSample {
        index: 0,
        uuid: "GPU-sim-0".into(),
        util_pct: 91.0,
        temperature_c: 61.0,
        power_w: 590.0,
        power_limit_w: Some(700.0),
        ecc_corrected: Some(0),
        ecc_uncorrected: Some(0),
        health: "ok".into(),
        ..GpuSample::default()
    };
    let bad = GpuSample {
        index: 1,
        uuid: "GPU-sim-1".into(),
        xid_total: 1,
        health: "critical".into(),
        health_reasons: vec![GpuHealthReason {
            severity: "critical".into(),
            code: "xid_79".into(),
            message: "XID 79: GPU has fallen off the bus".into(),
        }],
        ..ok.clone()
    };
    vec![ok, bad]
}

fn xid_79(node: &str, now: i64) -> GpuXidOccurred {
    GpuXidOccurred {
        envelope: Envelope::new::<GpuXidOccurred>(node, now),
        gpu_index: 1,
        gpu_uuid: "GPU-sim-1".into(),
        pci_bus_id: "00000000:2A:00.0".into(),
        xid: 79,
        meaning: "GPU has fallen off the bus".into(),
        severity: "critical".into(),
        likely_application: false,
        gpu_xid_total: 1,
    }
}

/// Simulated nodes: `sim-000` … `sim-119`; every 6th one last beat 10 minutes ago and was judged
/// offline then; the others beat now, every 10 minutes (so none turns suspect during the test).
const SIM_NODES: usize = 120;

fn site_dir() -> PathBuf {
    let dir = std::env::var_os("NERVE_SITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("site")
        });
    assert!(
        dir.join("pkg/nerve_ui_bg.wasm").exists(),
        "no console bundle in {}: run infra/dev/build-web.sh (infra/dev/test.sh does)",
        dir.display()
    );
    dir
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/screenshots");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// ChromeDriver's browser log (console messages, uncaught errors, failed loads).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

async fn browser() -> Browser {
    let port = nerve_platform::services::free_port().expect("port");
    let mut driver = tokio::process::Command::new("chromedriver");
    nerve_platform::services::die_with_parent(&mut driver);
    let driver = driver
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (infra/dev/install.sh --test installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let status_url = format!("{url}/status");
    eventually(DEADLINE, "chromedriver ready", || {
        let u = status_url.clone();
        async move {
            reqwest::get(u)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    let profile = tempfile::tempdir().expect("profile");
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.path().display())]
        },
        "goog:loggingPrefs": {"browser": "ALL"}
    });
    let caps = caps.as_object().cloned().expect("object");
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("WebDriver session");
    Browser {
        client,
        _driver: driver,
        _profile: profile,
    }
}

/// Opens `path`, waits for hydration, saves a screenshot, and fails on console errors.
async fn visit(c: &Client, base: &str, path: &str, shot: &str) {
    c.goto(&format!("{base}{path}")).await.expect("goto");
    c.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css("body[data-hydrated=true]"))
        .await
        .unwrap_or_else(|e| panic!("{path} did not hydrate: {e}"));
    screenshot(c, shot).await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "{path}: console errors: {errors:#?}");
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits until the element `css` has text satisfying `pred` (the page refreshes itself).
async fn wait_text(c: &Client, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    eventually(Duration::from_secs(60), what, || async {
        let el = c.find(Locator::Css(css)).await.ok()?;
        let t = el.text().await.ok()?;
        pred(&t).then_some(t)
    })
    .await
}

async fn row_ids(c: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for row in c
        .find_all(Locator::Css("tbody tr[data-node-id]"))
        .await
        .expect("rows")
    {
        ids.push(
            row.attr("data-node-id")
                .await
                .expect("attr")
                .unwrap_or_default(),
        );
    }
    ids
}

/// Opens the login page and signs in with `token` (the page moves on when it is valid).
async fn sign_in(c: &Client, token: &str) {
    let base = c.current_url().await.expect("url");
    visit(
        c,
        base.origin().ascii_serialization().as_str(),
        "/login",
        "login",
    )
    .await;
    type_into(c, &[("#token", token)]).await;
    click(c, "[data-testid=sign-in]").await;
}

/// Types each value into the input its selector names.
async fn type_into(c: &Client, fields: &[(&str, &str)]) {
    for (css, value) in fields {
        c.find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .send_keys(value)
            .await
            .expect("type");
    }
}

/// Clicks the element `css` selects, once it exists.
async fn click(c: &Client, css: &str) {
    click_on(c, Locator::Css(css)).await;
}

/// Clicks the link with exactly this text, once it exists.
async fn click_link(c: &Client, text: &str) {
    click_on(c, Locator::LinkText(text)).await;
}

async fn click_on(c: &Client, locator: Locator<'_>) {
    c.wait()
        .at_most(DEADLINE)
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {locator:?}: {e}"));
}

/// Serves the console on workers with `nerve`'s own stack size (its pages render deep).
#[test]
fn the_console_works_in_a_real_browser() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(nerve_platform::WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(console_in_a_real_browser());
}

async fn console_in_a_real_browser() {
    // NATS as production runs it: JWT auth, and this machine's agent enrolls like any node.
    let env = Env::start_secured().await;
    let cancel = CancellationToken::new();
    let metrics = Registry::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let liveness = env.spawn_liveness(&metrics, &cancel).await;
    let nats = env.client().await;
    let dispatcher = {
        let (client, metrics, cancel) = (nats.clone(), metrics.clone(), cancel.clone());
        let signer = env.signer();
        tokio::spawn(async move { nerve_dispatch::run(client, &metrics, signer, cancel).await })
    };
    let state = nerve_api::AppState::new(
        env.ch.clone(),
        Some(nats),
        env.config.api.clone(),
        env.config.alerts.clone(),
        metrics,
    );
    let evaluator = {
        let mut config = env.config.alerts.clone();
        config.eval_interval_ms = 200;
        let (ctx, cancel) = (state.alerts().clone(), cancel.clone());
        tokio::spawn(
            async move { nerve_alerts::run(ctx, config, None, &Registry::new(), cancel).await },
        )
    };
    state.set_trust(
        nerve_api::auth::enroll::NodeTrust::connect(
            &env.config.nats,
            &env.config.api.nats_authority_dir,
            env.signer().public_key(),
        )
        .await
        .expect("NATS authority"),
    );
    let tokens = state.clone();
    let app = nerve_ui::server::app(state, &site_dir());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(nerve_api::serve(listener, app, cancel.clone()));

    // The fleet: simulated nodes and this machine's real agent.
    let now = nerve_platform::now_ms();
    for i in 0..SIM_NODES {
        let id = format!("sim-{i:03}");
        publish_inventory(&env.js, &inventory(&id, &format!("gpu-host-{i:03}"), now)).await;
        let age_ms = if i % 6 == 0 { 600_000 } else { 0 };
        let mut hb = heartbeat(&id, now - age_ms, 0);
        hb.interval_secs = 600;
        hb.cpu_pct = (i as f32 * 7.0) % 100.0;
        if i == GPU_NODE {
            hb.gpus = gpu_samples();
        }
        publish_heartbeat(&env.js, &hb).await;
        if age_ms > 0 {
            publish_went_offline(&env.js, &id, now - age_ms).await;
        }
    }
    publish_event(
        &env.js,
        subjects::gpu_xid("sim-001"),
        &xid_79("sim-001", now),
    )
    .await;
    let admin_identity = nerve_api::dto::auth::Identity {
        token_id: "browser-test".into(),
        name: "test-harness".into(),
        role: nerve_api::dto::auth::Role::Admin,
    };
    let enrollment = nerve_api::auth::enroll::create(
        &tokens,
        &admin_identity,
        nerve_api::dto::auth::CreateEnrollment {
            name: "this machine".into(),
            uses: Some(1),
            ttl_secs: Some(600),
        },
    )
    .await
    .expect("enrollment token");
    let mut agent = env.spawn_nerve(&["agent", "--enroll", &enrollment.token, "--api", &base]);
    let agent_id = eventually(DEADLINE, "the real agent's node", || async {
        let id = std::fs::read_to_string(env.state_dir.path().join("agent/node_id")).ok()?;
        let n = env
            .count(&format!(
                "SELECT count() FROM node_state WHERE node_id = '{}'",
                id.trim()
            ))
            .await;
        (n > 0).then(|| id.trim().to_owned())
    })
    .await;
    eventually(DEADLINE, "every simulated node projected", || async {
        (env.count("SELECT count() FROM (SELECT node_id FROM node_state FINAL)")
            .await
            == SIM_NODES as u64 + 1)
            .then_some(())
    })
    .await;
    eventually(
        DEADLINE,
        "the earlier offline judgements projected",
        || async {
            (env.count("SELECT count() FROM node_liveness FINAL WHERE state = 'offline'")
                .await
                == (SIM_NODES as u64).div_ceil(6))
            .then_some(())
        },
    )
    .await;

    let b = browser().await;
    let c = &b.client;

    // The bundle is served compressed and revalidated on every load.
    // No transparent decompression (reqwest's `gzip` feature may be on through another
    // workspace member), so the header is seen as sent.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let wasm = raw
        .get(format!("{base}/pkg/nerve_ui_bg.wasm"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("wasm");
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-encoding"], "gzip");
    assert_eq!(wasm.headers()["cache-control"], "no-cache");
    assert!(wasm.headers().contains_key("last-modified"));

    // Signing in. A page asked for first leads to the login; a wrong token is explained.
    let viewer = issue_token(&tokens, "vera", Role::Viewer).await;
    let admin = issue_token(&tokens, "ada", Role::Admin).await;
    visit(c, &base, "/tasks", "login").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/login");
    sign_in(c, &format!("nerve_{}_{}", "0".repeat(16), "0".repeat(64))).await;
    let error = text(c, "[data-testid=sign-in-error]").await;
    assert!(error.contains("not valid"), "{error}");
    // A viewer sees who they are and is offered no changes.
    sign_in(c, &viewer).await;
    wait_text(c, "[data-testid=who]", "signed in as the viewer", |t| {
        t == "vera · viewer"
    })
    .await;
    visit(c, &base, "/tasks", "tasks-viewer").await;
    assert_eq!(text(c, "main p.muted").await, "No tasks yet.");
    assert!(
        c.find(Locator::Css("a[href='/tasks/new']")).await.is_err(),
        "a viewer is offered New task"
    );
    visit(c, &base, "/clusters", "clusters-viewer").await;
    assert!(
        c.find(Locator::Css("[data-testid=cluster-create]"))
            .await
            .is_err()
    );
    visit(c, &base, "/nodes/sim-002", "node-viewer").await;
    text(c, "[data-testid=maintenance-state]").await;
    assert!(
        c.find(Locator::Css("[data-testid=cordon]")).await.is_err(),
        "a viewer is offered Cordon"
    );
    // Server functions answer only JSON from the console's own origin.
    let cookie = format!("nerve_session={admin}");
    let http = reqwest::Client::new();
    let forged = http
        .post(format!("{base}/ui-api/cluster-create"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"name":"forged","description":""}"#)
        .send()
        .await
        .expect("cross-origin post");
    assert_eq!(forged.status(), 403);
    let form = http
        .post(format!("{base}/ui-api/cluster-create"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=forged&description=")
        .send()
        .await
        .expect("form post");
    assert_eq!(form.status(), 403);
    let anonymous = http
        .post(format!("{base}/ui-api/clusters"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("anonymous post");
    assert_eq!(anonymous.status(), 401);
    click(c, "[data-testid=sign-out]").await;
    eventually(DEADLINE, "signed out", || async {
        (c.current_url().await.ok()?.path() == "/login").then_some(())
    })
    .await;
    sign_in(c, &admin).await;
    wait_text(c, "[data-testid=who]", "signed in as the admin", |t| {
        t == "ada · admin"
    })
    .await;

    // Tokens: an admin issues one (its secret shown once) and revokes it.
    visit(c, &base, "/tokens", "tokens").await;
    type_into(c, &[("#token-name", "bob")]).await;
    click(c, "[data-testid=token-create]").await;
    let secret = text(c, "[data-testid=new-token-secret]").await;
    assert!(secret.starts_with("nerve_"), "{secret}");
    let bob_id = &secret["nerve_".len().."nerve_".len() + 16];
    click(
        c,
        &format!("tr[data-token='{bob_id}'] [data-testid=token-revoke]"),
    )
    .await;
    wait_text(
        c,
        &format!("tr[data-token='{bob_id}']"),
        "bob revoked",
        |t| t.contains("revoked"),
    )
    .await;
    // Enrollment: this machine's agent is listed as enrolled; an enrollment token is issued
    // (shown once) and revoked.
    visit(c, &base, "/enrollment", "enrollment").await;
    wait_text(
        c,
        &format!("tr[data-node='{agent_id}']"),
        "the enrolled agent",
        |t| t.contains("active"),
    )
    .await;
    type_into(c, &[("#enroll-name", "rack 9")]).await;
    click(c, "[data-testid=enrollment-create]").await;
    let enroll_token = text(c, "[data-testid=new-enrollment-token]").await;
    assert!(enroll_token.starts_with("nerve_"), "{enroll_token}");
    let enroll_id = &enroll_token["nerve_".len().."nerve_".len() + 16];
    click(
        c,
        &format!("tr[data-enrollment='{enroll_id}'] [data-testid=enrollment-revoke]"),
    )
    .await;
    wait_text(
        c,
        &format!("tr[data-enrollment='{enroll_id}']"),
        "the enrollment token revoked",
        |t| t.contains("revoked"),
    )
    .await;
    // The audit trail shows the refused calls above and the admin's changes.
    visit(c, &base, "/audit", "audit").await;
    eventually(DEADLINE, "a refused call in the audit trail", || async {
        c.find(Locator::Css("tr[data-outcome=denied]")).await.ok()
    })
    .await;
    let trail = wait_text(c, "main table", "the token revoked, audited", |t| {
        t.contains("/ui-api/token-revoke") && t.contains("ada (admin)")
    })
    .await;
    // Reads are not changes: the pages' refreshes are not in the trail; the refused
    // cross-origin and form-encoded calls are.
    let words: Vec<&str> = trail.split_whitespace().collect();
    assert!(!words.contains(&"/ui-api/tokens"), "{trail}");
    assert!(words.contains(&"/ui-api/cluster-create"), "{trail}");

    // The API reference: every operation of the OpenAPI document, by tag, with its right.
    visit(c, &base, "/api-docs", "api-docs").await;
    let row = wait_text(
        c,
        "tr[data-operation='GET /api/v1/nodes']",
        "the node list's operation",
        |t| t.contains("One page of nodes"),
    )
    .await;
    assert!(
        row.contains("read") && row.contains("200 NodePage"),
        "{row}"
    );
    let create = text(c, "tr[data-operation='POST /api/v1/tasks']").await;
    assert!(
        create.contains("operate") && create.contains("CreateTask") && create.contains("202"),
        "{create}"
    );
    let document = c
        .find(Locator::Css("[data-testid=openapi-document]"))
        .await
        .expect("the document's link")
        .attr("href")
        .await
        .expect("href");
    assert_eq!(document.as_deref(), Some("/api/v1/openapi.json"));

    // Dashboard.
    visit(c, &base, "/", "dashboard").await;
    assert_eq!(text(c, "[data-testid=count-total]").await, "121");
    assert_eq!(text(c, "[data-testid=count-offline]").await, "20");
    // As of a time before the fleet existed, picked in the form (a browser's datetime-local
    // value: UTC, no seconds), then back to now.
    c.execute(
        "document.querySelector('[data-testid=as-of]').value = '2020-01-01T00:00'; return null;",
        vec![],
    )
    .await
    .expect("pick a time");
    click(c, "form.asof button").await;
    wait_text(c, "[data-testid=as-of-banner]", "the past banner", |t| {
        t.contains("2020-01-01 00:00:00")
    })
    .await;
    assert_eq!(text(c, "[data-testid=count-total]").await, "0");
    click(c, "[data-testid=as-of-now]").await;
    wait_text(c, "[data-testid=count-total]", "the fleet now", |t| {
        t == "121"
    })
    .await;

    // Nodes: pagination, search, filter, sort — all by clicks.
    visit(c, &base, "/nodes", "nodes").await;
    assert_eq!(text(c, "[data-testid=range]").await, "1–50 of 121 nodes");
    click(c, "a[rel=next]").await;
    wait_text(c, "[data-testid=page]", "page 2", |t| t == "Page 2 of 3").await;
    assert_eq!(text(c, "[data-testid=range]").await, "51–100 of 121 nodes");

    c.find(Locator::Css("#node-search"))
        .await
        .expect("search box")
        .send_keys("gpu-host-01")
        .await
        .expect("type");
    click(c, "form[role=search] button").await;
    wait_text(c, "[data-testid=range]", "search results", |t| {
        t == "1–10 of 10 nodes"
    })
    .await;
    let ids = row_ids(c).await;
    assert_eq!(ids.first().map(String::as_str), Some("sim-010"), "{ids:?}");
    assert!(
        c.current_url()
            .await
            .expect("url")
            .as_str()
            .contains("q=gpu-host-01")
    );

    // The status filter keeps the search: sim-012 and sim-018 are the offline matches.
    click_link(c, "Offline").await;
    wait_text(c, "[data-testid=range]", "offline search results", |t| {
        t == "1–2 of 2 nodes"
    })
    .await;
    assert_eq!(row_ids(c).await, ["sim-012", "sim-018"]);
    click(c, "nav a[href='/nodes']").await; // the section link clears search and filter
    wait_text(c, "[data-testid=range]", "all nodes", |t| {
        t == "1–50 of 121 nodes"
    })
    .await;
    click_link(c, "Offline").await;
    wait_text(c, "[data-testid=range]", "offline filter", |t| {
        t == "1–20 of 20 nodes"
    })
    .await;
    let ids = row_ids(c).await;
    assert!(ids.iter().all(|id| id.starts_with("sim-")), "{ids:?}");
    screenshot(c, "nodes-offline").await;

    click_link(c, "All").await;
    wait_text(c, "[data-testid=range]", "all nodes", |t| {
        t == "1–50 of 121 nodes"
    })
    .await;
    click(c, "a[data-sort=cpu]").await;
    eventually(DEADLINE, "sorted by CPU ascending", || async {
        c.current_url()
            .await
            .ok()?
            .as_str()
            .contains("sort=cpu")
            .then_some(())
    })
    .await;
    click(c, "a[data-sort=cpu]").await; // again: descending
    eventually(DEADLINE, "sorted by CPU descending", || async {
        let url = c.current_url().await.ok()?;
        let ids = row_ids(c).await;
        // The busiest simulated node: cpu = (7 i) mod 100 peaks at 99 for i = 57.
        (url.as_str().contains("order=desc") && ids.first().is_some_and(|id| id == "sim-057"))
            .then_some(())
    })
    .await;
    screenshot(c, "nodes-sorted").await;
    assert!(console_errors(c).await.is_empty());

    // Node detail of the real node: its inventory and charts with data points.
    visit(c, &base, &format!("/nodes/{agent_id}"), "node-detail").await;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(text(c, "[data-testid=node-title]").await, hostname.trim());
    assert!(text(c, "[data-testid=inv-cpu]").await.contains("logical"));
    assert!(text(c, "[data-testid=inv-network]").await.contains("lo"));
    // The full inventory of this machine: caches, memory source, whole disks, identity.
    assert!(text(c, "[data-testid=inv-caches]").await.contains("L1"));
    assert!(
        text(c, "[data-testid=inv-memory]")
            .await
            .contains("Source:")
    );
    assert_ne!(text(c, "[data-testid=inv-virt]").await, "—");
    let block = text(c, "[data-testid=inv-block]").await;
    assert!(block.contains("SMART"), "{block}");
    eventually(
        Duration::from_secs(60),
        "a CPU chart with data points",
        || async {
            let svg = c.find(Locator::Css("svg[data-points]")).await.ok()?;
            let n: usize = svg.attr("data-points").await.ok()??.parse().ok()?;
            (n >= 1).then_some(())
        },
    )
    .await;
    screenshot(c, "node-detail-charts").await;

    // A phone-sized screen.
    c.set_window_size(390, 844).await.expect("resize");
    visit(c, &base, "/", "dashboard-phone").await;
    visit(c, &base, "/nodes", "nodes-phone").await;
    c.set_window_size(1280, 1000).await.expect("resize");

    // A GPU node: per-GPU verdicts with reasons, and the XID event.
    visit(c, &base, "/nodes/sim-001", "node-gpu-health").await;
    let health = text(c, "[data-testid=gpu-health]").await;
    assert!(
        health.contains("critical") && health.contains("fallen off the bus"),
        "{health}"
    );
    wait_text(c, "[data-testid=events]", "the XID event", |t| {
        t.contains("XID 79")
    })
    .await;

    // Cordoned through the console: the state and the reason shown, the list filters it, the
    // dashboard counts it.
    type_into(c, &[("#maint-reason", "XID 79: reseat the GPU")]).await;
    click(c, "[data-testid=cordon]").await;
    wait_text(c, "[data-testid=maintenance-state]", "cordoned", |t| {
        t.contains("cordoned")
    })
    .await;
    wait_text(c, "[data-testid=maintenance-history]", "the reason", |t| {
        t.contains("reseat the GPU") && t.contains("ada/")
    })
    .await;
    screenshot(c, "node-cordoned").await;
    visit(c, &base, "/nodes?maintenance=cordoned", "nodes-cordoned").await;
    eventually(Duration::from_secs(60), "the cordoned list", || async {
        (row_ids(c).await == ["sim-001"]).then_some(())
    })
    .await;
    visit(c, &base, "/", "dashboard-cordoned").await;
    wait_text(c, "[data-testid=count-cordoned]", "one cordoned", |t| {
        t == "1"
    })
    .await;
    // A remediation run's journal shows on the node's page.
    let entry = |kind: &str, outcome: &str, detail: &str| nerve_schemas::RemediationRecorded {
        envelope: Envelope::new::<nerve_schemas::RemediationRecorded>(
            "sim-001",
            nerve_platform::now_ms(),
        ),
        run_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c70".into(),
        policy_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c71".into(),
        policy_name: "xid-gpu-lost".into(),
        kind: kind.into(),
        step: -1,
        action: String::new(),
        stage: String::new(),
        outcome: outcome.into(),
        task_id: String::new(),
        cause: "XID 79 on GPU 1".into(),
        detail: detail.into(),
        dry_run: false,
        requested_by: "remediation".into(),
    };
    for e in [
        entry("run_started", "", ""),
        entry(
            "run_ended",
            "service_required",
            "step 1 (task) failed: no drain hook",
        ),
    ] {
        publish_event(&env.js, subjects::control_remediation("sim-001"), &e).await;
    }
    visit(c, &base, "/nodes/sim-001", "node-remediation").await;
    wait_text(c, "[data-testid=remediation-journal]", "the journal", |t| {
        t.contains("xid-gpu-lost") && t.contains("service_required") && t.contains("no drain hook")
    })
    .await;

    // A task through the console: the form previews the target, Run leads to the task's page,
    // whose grid turns the node green and shows its output.
    visit(c, &base, "/tasks/new", "task-new").await;
    let command = c
        .find(Locator::Css("#task-command"))
        .await
        .expect("command input");
    command
        .send_keys("echo hello-from-the-console")
        .await
        .expect("type");
    let nodes = c
        .find(Locator::Css("#task-nodes"))
        .await
        .expect("nodes input");
    nodes.send_keys(&agent_id).await.expect("type");
    wait_text(c, "[data-testid=task-preview]", "the target preview", |t| {
        t.contains("1 node") && t.contains(&agent_id)
    })
    .await;
    screenshot(c, "task-new-filled").await;
    click(c, "[data-testid=task-submit]").await;
    eventually(DEADLINE, "the task's page", || async {
        let url = c.current_url().await.ok()?;
        let path = url.path().to_owned();
        (path.starts_with("/tasks/") && path != "/tasks/new").then_some(())
    })
    .await;
    let cell = format!("[data-testid=task-grid] a[data-node='{agent_id}']");
    eventually(
        Duration::from_secs(60),
        "the node's cell succeeded",
        || async {
            let el = c.find(Locator::Css(&cell)).await.ok()?;
            (el.attr("data-state").await.ok()?? == "succeeded").then_some(())
        },
    )
    .await;
    click(c, &cell).await;
    wait_text(c, "[data-testid=task-stdout]", "the node's output", |t| {
        t.contains("hello-from-the-console")
    })
    .await;
    screenshot(c, "task-detail").await;
    visit(c, &base, "/tasks", "tasks").await;
    assert!(text(c, "tbody tr[data-task-id]").await.contains("1 / 1"));
    assert!(console_errors(c).await.is_empty());

    // Clusters: create one in the console, put the real node in it (API), follow it from the
    // node's page to the filtered node list.
    visit(c, &base, "/clusters", "clusters-empty").await;
    let name = c
        .find(Locator::Css("#cluster-name"))
        .await
        .expect("name input");
    name.send_keys("gpu-pool").await.expect("type");
    click(c, "[data-testid=cluster-create]").await;
    wait_text(
        c,
        "tr[data-cluster=gpu-pool]",
        "the new cluster listed",
        |t| t.contains("gpu-pool"),
    )
    .await;
    let assigned = reqwest::Client::new()
        .put(format!("{base}/api/v1/clusters/gpu-pool/nodes/{agent_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("assign");
    assert_eq!(assigned.status(), 202);
    wait_text(
        c,
        "tr[data-cluster=gpu-pool] [data-testid=cluster-nodes]",
        "one node in it",
        |t| t == "1",
    )
    .await;
    screenshot(c, "clusters").await;
    visit(c, &base, &format!("/nodes/{agent_id}"), "node-in-cluster").await;
    click_link(c, "cluster gpu-pool").await;
    wait_text(c, "[data-testid=range]", "the cluster's nodes", |t| {
        t == "1–1 of 1 nodes"
    })
    .await;
    assert!(
        text(c, "[data-testid=scope]")
            .await
            .contains("cluster gpu-pool")
    );
    assert_eq!(row_ids(c).await, vec![agent_id.clone()]);
    assert!(console_errors(c).await.is_empty());

    // Alerting: a rule made in the console (its problems shown by field first) fires for the
    // simulated node above it; a silence mutes that node.
    visit(c, &base, "/alerts/rules", "alert-rules-empty").await;
    click(c, "[data-testid=rule-create]").await;
    wait_text(c, "[data-testid=error-name]", "the name's problem", |t| {
        t.contains("1 to 64")
    })
    .await;
    assert!(
        text(c, "[data-testid=error-threshold]")
            .await
            .contains("required")
    );
    screenshot(c, "alert-rule-errors").await;
    type_into(c, &[("#rule-name", "cpu-high"), ("#rule-threshold", "90")]).await;
    // The simulated heartbeats are from the test's start: look back an hour.
    let window = c.find(Locator::Css("#rule-window")).await.expect("window");
    window.clear().await.expect("clear");
    window.send_keys("3600").await.expect("type");
    click(c, "[data-testid=rule-create]").await;
    // sim-013 beats at 91 % CPU (13 × 7).
    wait_text(
        c,
        "tr[data-rule=cpu-high] [data-testid=rule-firing]",
        "the rule firing",
        |t| t.parse::<u32>().is_ok_and(|n| n > 0),
    )
    .await;
    screenshot(c, "alert-rules").await;
    visit(c, &base, "/alerts", "alerts").await;
    wait_text(c, "tr[data-node=sim-013]", "sim-013's alert", |t| {
        t.contains("cpu-high") && t.contains("warning")
    })
    .await;
    type_into(
        c,
        &[
            ("#silence-node", "sim-013"),
            ("#silence-reason", "maintenance"),
        ],
    )
    .await;
    click(c, "[data-testid=silence-create]").await;
    wait_text(
        c,
        "tr[data-silence][data-active=true]",
        "the silence listed",
        |t| t.contains("node sim-013") && t.contains("maintenance"),
    )
    .await;
    wait_text(
        c,
        "tr[data-node=sim-013] [data-testid=muted]",
        "sim-013 muted now",
        |t| t == "muted",
    )
    .await;
    wait_text(
        c,
        "[data-testid=alert-history]",
        "the firing in the history",
        |t| t.contains("fired") && t.contains("sim-013"),
    )
    .await;
    screenshot(c, "alerts-silenced").await;
    visit(c, &base, "/alerts/channels", "alert-channels").await;
    assert!(console_errors(c).await.is_empty());

    // Stop the agent: the node turns offline on screen without a reload.
    visit(c, &base, &format!("/nodes/{agent_id}"), "node-before-stop").await;
    assert_eq!(text(c, ".section-head .badge").await, "online");
    let pid = agent.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    agent.wait().await.expect("agent exit");
    wait_text(
        c,
        ".section-head .badge",
        "the stopped agent's node offline",
        |t| t == "offline",
    )
    .await;
    wait_text(c, "[data-testid=events]", "the offline event", |t| {
        t.contains("NodeBecameSuspect") && t.contains("NodeWentOffline")
    })
    .await;
    screenshot(c, "node-offline").await;
    assert!(console_errors(c).await.is_empty());

    b.client.close().await.expect("close");
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
    liveness.await.expect("join").expect("liveness");
    dispatcher.await.expect("join").expect("dispatcher");
    evaluator.await.expect("join").expect("evaluator");
    server.await.expect("join").expect("server");
}
