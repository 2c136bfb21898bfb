//! Shared setup for the system tests: services, config, event builders, child `nerve` processes.

use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::{self, Context};
use nerve_api::dto::auth::{CreateToken, Identity, Role};
use nerve_ingest::Outgoing;
use nerve_platform::config::{ClickHouseConfig, Config};
use nerve_platform::testkit::{TestNats, eventually, fresh_database};
use nerve_schemas::{Envelope, HeartbeatRecorded, subjects};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A private NATS, a fresh ClickHouse database and a config pointing at both.
pub struct Env {
    /// The test's nats-server; killed on drop.
    pub nats: TestNats,
    pub config: Config,
    pub js: Context,
    pub ch: clickhouse::Client,
    pub state_dir: tempfile::TempDir,
    /// The NATS authority's keys ([`Env::start_secured`]).
    _keys: Option<tempfile::TempDir>,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_on(TestNats::start(), None, None).await
    }

    /// [`Env::start`] with its tables in `clickhouse` (a cluster's fresh database).
    pub async fn start_with_clickhouse(clickhouse: ClickHouseConfig) -> Self {
        Self::start_full(TestNats::start(), None, None, Some(clickhouse)).await
    }

    /// [`Env::start`] with NATS as production runs it: decentralized JWT auth (no anonymous
    /// client), an authority in the state dir, and this env (projectors, API, `js`) signed in
    /// with an admin user; `config.api.nats_authority_dir` set, so an API can enroll nodes.
    pub async fn start_secured() -> Self {
        let keys = tempfile::tempdir().expect("tmp");
        let dir = keys.path().join("authority");
        let authority =
            nerve_ingest::authority::Authority::load_or_create(&dir).expect("authority");
        let creds = dir.join("admin.creds");
        nerve_ingest::keys::write_private(
            &creds,
            &authority
                .role_creds("admin", &nerve_ingest::authority::Grant::all())
                .expect("creds"),
        )
        .expect("write creds");
        let nats = TestNats::start_with(|server_dir| nerve_platform::services::NatsOptions {
            auth: Some(
                authority
                    .server_config(&server_dir.join("jwt"))
                    .expect("config"),
            ),
            ..Default::default()
        });
        Self::start_on(nats, Some(creds), Some(keys)).await
    }

    /// [`Env::start`] on a JetStream cluster of 3 servers (`TestNats::cluster`), every stream
    /// replicated on all 3.
    pub async fn start_cluster() -> Self {
        Self::start_on(TestNats::cluster(3), None, None).await
    }

    async fn start_on(
        nats: TestNats,
        creds: Option<std::path::PathBuf>,
        keys: Option<tempfile::TempDir>,
    ) -> Self {
        Self::start_full(nats, creds, keys, None).await
    }

    async fn start_full(
        nats: TestNats,
        creds: Option<std::path::PathBuf>,
        keys: Option<tempfile::TempDir>,
        clickhouse: Option<ClickHouseConfig>,
    ) -> Self {
        let mut config = Config::default();
        config.nats.url = nats.url();
        config.api.agent_nats_url = nats.url();
        config.nats.credentials_file = creds;
        if let Some(keys) = &keys {
            config.api.nats_authority_dir = keys.path().join("authority");
        }
        config.clickhouse = match clickhouse {
            Some(c) => c,
            None => fresh_database().await,
        };
        config.projector.ack_wait_secs = 2;
        config.projector.batch_max_wait_ms = 50;
        config.api.fleet_snapshot_max_age_ms = 0; // a request sees what is stored before it
        config.agent.heartbeat_interval_secs = 1;
        // Suspect after 5 missed 1 s heartbeats, offline 2 s later: tests see both quickly, and
        // a test machine busy for a moment does not look like a dead node.
        config.liveness.suspect_after_missed_heartbeats = 5;
        config.liveness.offline_grace_secs = 2;
        config.liveness.check_interval_ms = 100;
        config.liveness.resume_grace_secs = 8;
        let state_dir = tempfile::tempdir().expect("tmp");
        config.agent.state_dir = state_dir.path().join("agent");
        config.alerts.secrets_key_file = state_dir.path().join("secrets.key");
        nerve_platform::secrets::Sealer::create_if_missing(&config.alerts.secrets_key_file)
            .expect("secrets key");
        config.dispatch.signing_key_file = state_dir.path().join("dispatch.seed");
        config.agent.dispatch_public_key =
            nerve_ingest::offer::OfferSigner::load_or_create(&config.dispatch.signing_key_file)
                .expect("dispatch key")
                .public_key();
        let client = nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("test"), false)
            .await
            .expect("connect");
        let js = jetstream::new(client);
        config.streams.replicas = (1 + nats.peers.len()).min(3);
        // A cluster that has just started elects its JetStream leader first.
        nerve_platform::testkit::eventually(DEADLINE, "the streams created", || async {
            nerve_ingest::ensure_streams(&js, &config.streams)
                .await
                .ok()
        })
        .await;
        nerve_projections::ensure_tables(&config.clickhouse)
            .await
            .expect("tables");
        let ch = nerve_platform::clickhouse::client(&config.clickhouse);
        Self {
            nats,
            config,
            js,
            ch,
            state_dir,
            _keys: keys,
        }
    }

    /// A new NATS connection as this env's tests and in-process roles (signed in when NATS
    /// has auth on).
    pub async fn client(&self) -> async_nats::Client {
        nerve_ingest::connect(&self.config.nats, nerve_ingest::Who::Role("test"), false)
            .await
            .expect("connect to NATS")
    }

    /// Environment that makes a `nerve` child process use this config.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("NERVE_NATS__URL".into(), c.nats.url.clone()),
            ("NERVE_CLICKHOUSE__URL".into(), c.clickhouse.url.clone()),
            (
                "NERVE_CLICKHOUSE__DATABASE".into(),
                c.clickhouse.database.clone(),
            ),
            (
                "NERVE_PROJECTOR__ACK_WAIT_SECS".into(),
                c.projector.ack_wait_secs.to_string(),
            ),
            (
                "NERVE_PROJECTOR__BATCH_MAX_WAIT_MS".into(),
                c.projector.batch_max_wait_ms.to_string(),
            ),
            // Tests start from no remediation policy (the defaults are tested on `nerve dev`):
            // two saved policies would be control events every test would have to count.
            ("NERVE_REMEDIATION__INSTALL_DEFAULTS".into(), "false".into()),
            (
                "NERVE_AGENT__HEARTBEAT_INTERVAL_SECS".into(),
                c.agent.heartbeat_interval_secs.to_string(),
            ),
            (
                "NERVE_AGENT__STATE_DIR".into(),
                c.agent.state_dir.display().to_string(),
            ),
            (
                "NERVE_LIVENESS__SUSPECT_AFTER_MISSED_HEARTBEATS".into(),
                c.liveness.suspect_after_missed_heartbeats.to_string(),
            ),
            (
                "NERVE_LIVENESS__OFFLINE_GRACE_SECS".into(),
                c.liveness.offline_grace_secs.to_string(),
            ),
            (
                "NERVE_LIVENESS__CHECK_INTERVAL_MS".into(),
                c.liveness.check_interval_ms.to_string(),
            ),
            (
                "NERVE_LIVENESS__RESUME_GRACE_SECS".into(),
                c.liveness.resume_grace_secs.to_string(),
            ),
            (
                "NERVE_ALERTS__SECRETS_KEY_FILE".into(),
                c.alerts.secrets_key_file.display().to_string(),
            ),
            (
                "NERVE_DISPATCH__SIGNING_KEY_FILE".into(),
                c.dispatch.signing_key_file.display().to_string(),
            ),
            (
                "NERVE_AGENT__DISPATCH_PUBLIC_KEY".into(),
                c.agent.dispatch_public_key.clone(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ]
        .into_iter()
        .chain((!c.clickhouse.cluster.is_empty()).then(|| {
            (
                "NERVE_CLICKHOUSE__CLUSTER".to_owned(),
                c.clickhouse.cluster.clone(),
            )
        }))
        .chain(c.nats.credentials_file.as_ref().map(|f| {
            (
                "NERVE_NATS__CREDENTIALS_FILE".to_owned(),
                f.display().to_string(),
            )
        }))
        .collect()
    }

    /// Starts `nerve <args>` with this config; killed when dropped.
    pub fn spawn_nerve(&self, args: &[&str]) -> tokio::process::Child {
        self.spawn_nerve_with(args, &[])
    }

    /// Like [`Env::spawn_nerve`] with extra environment.
    pub fn spawn_nerve_with(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
        self.spawn_nerve_to(args, env, Stdio::inherit())
    }

    /// Like [`Env::spawn_nerve_with`], its stderr (the log) written to `log`.
    pub fn spawn_nerve_logged(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> tokio::process::Child {
        let log = std::fs::File::create(log).expect("log file");
        self.spawn_nerve_to(args, env, log.into())
    }

    fn spawn_nerve_to(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_nerve"));
        nerve_platform::services::die_with_parent(&mut cmd);
        cmd.args(args)
            .envs(self.child_env())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nerve")
    }

    /// Runs `nerve <args>` with this config to its end: whether it succeeded, and its stdout
    /// and stderr.
    pub async fn run_nerve(&self, args: &[&str]) -> (bool, String) {
        self.run_nerve_with(args, &[]).await
    }

    /// Like [`Env::run_nerve`] with extra environment.
    pub async fn run_nerve_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
            .args(args)
            .envs(self.child_env())
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run nerve");
        (out.status.success(), said(&out))
    }

    /// Runs the projectors in this process until `cancel`.
    pub fn spawn_projectors(
        &self,
        metrics: &nerve_platform::metrics::Registry,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<Result<(), nerve_projections::ProjectorError>> {
        tokio::spawn(nerve_projections::run_all(
            self.js.clone(),
            self.config.clickhouse.clone(),
            self.config.projector.clone(),
            metrics.clone(),
            None,
            cancel.clone(),
        ))
    }

    /// Runs the liveness tracker in this process until `cancel`.
    pub async fn spawn_liveness(
        &self,
        metrics: &nerve_platform::metrics::Registry,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<Result<(), nerve_liveness::LivenessError>> {
        let client = self.client().await;
        let (config, metrics, cancel) = (
            self.config.liveness.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move { nerve_liveness::run(client, &config, &metrics, cancel).await })
    }

    /// The node id of the agent using this env's state dir, once it has `n` heartbeats stored.
    pub async fn agent_node_with_heartbeats(&self, n: u64, what: &str) -> String {
        let path = self.state_dir.path().join("agent/node_id");
        eventually(DEADLINE, what, || async {
            let id = std::fs::read_to_string(&path).ok()?;
            let id = id.trim().to_owned();
            let stored = self
                .count(&format!(
                    "SELECT count() FROM heartbeats WHERE node_id = '{id}'"
                ))
                .await;
            (stored >= n).then_some(id)
        })
        .await
    }

    /// The node id of the agent keeping its state in `state_dir`, once its node is stored.
    pub async fn node_of(&self, state_dir: &std::path::Path) -> String {
        eventually(DEADLINE, "an agent's heartbeat", || async {
            let id = std::fs::read_to_string(state_dir.join("node_id")).ok()?;
            let id = id.trim().to_owned();
            let n = self
                .count(&format!(
                    "SELECT count() FROM node_state WHERE node_id = '{id}'"
                ))
                .await;
            (n > 0).then_some(id)
        })
        .await
    }

    /// The dispatcher's signing key (the one this env's agents pin).
    pub fn signer(&self) -> std::sync::Arc<nerve_ingest::offer::OfferSigner> {
        std::sync::Arc::new(
            nerve_ingest::offer::OfferSigner::load_or_create(
                &self.config.dispatch.signing_key_file,
            )
            .expect("dispatch key"),
        )
    }

    /// The API router over this env's ClickHouse and event log, with an admin token.
    pub async fn app(&self) -> Api {
        self.app_with(
            self.config.api.clone(),
            nerve_platform::metrics::Registry::new(),
        )
        .await
    }

    /// [`Env::app`] with another API config and metrics registry.
    pub async fn app_with(
        &self,
        config: nerve_platform::config::ApiConfig,
        metrics: nerve_platform::metrics::Registry,
    ) -> Api {
        let nats = self.client().await;
        let state = nerve_api::AppState::new(
            self.ch.clone(),
            Some(nats),
            config,
            self.config.alerts.clone(),
            metrics,
        );
        let token = issue_token(&state, "test-admin", Role::Admin).await;
        Api {
            router: nerve_api::router(state.clone()),
            state,
            token,
        }
    }

    pub async fn count(&self, sql: &str) -> u64 {
        self.ch.query(sql).fetch_one::<u64>().await.expect(sql)
    }
}

/// An API router, its state and a token to call it with.
#[derive(Clone)]
pub struct Api {
    pub router: axum::Router,
    pub state: nerve_api::AppState,
    pub token: String,
}

impl Api {
    /// The same API called with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
        }
    }
}

/// Issues a token with `role` on `state`'s event log and waits until `state` has the tokens
/// loaded; the token string.
pub async fn issue_token(state: &nerve_api::AppState, name: &str, role: Role) -> String {
    let by = Identity {
        token_id: "system".into(),
        name: "test-harness".into(),
        role: Role::Admin,
    };
    let req = CreateToken {
        name: name.into(),
        role: role.as_str().into(),
        ttl_secs: None,
    };
    let issued = nerve_api::auth::tokens::issue(state, &by, req)
        .await
        .expect("issue a token");
    state.keyring().ready().await;
    issued.token
}

/// One API request through the router (no socket) with the API's token; the answer's status
/// and JSON body (`Null` when it is not JSON).
pub async fn call(
    app: &Api,
    method: axum::http::Method,
    uri: &str,
    body: serde_json::Value,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", app.token))
        .header("content-type", "application/json")
        .body(if body.is_null() {
            axum::body::Body::empty()
        } else {
            axum::body::Body::from(body.to_string())
        })
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// What a finished process printed: its stdout, then its stderr.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A GET that must answer 200; its JSON body.
pub async fn get_ok(app: &Api, uri: &str) -> serde_json::Value {
    let (status, body) = call(app, axum::http::Method::GET, uri, serde_json::Value::Null).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{uri}: {body}");
    body
}

/// Sends `sig` (e.g. `-TERM`, `-KILL`) to a child process and waits for it to exit.
pub async fn signal(child: &mut tokio::process::Child, sig: &str) -> std::process::ExitStatus {
    let pid = child.id().expect("pid");
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    child.wait().await.expect("wait")
}

/// A valid heartbeat of `node_id` at `ts_ms`.
pub fn heartbeat(node_id: &str, ts_ms: i64, seq: i64) -> HeartbeatRecorded {
    HeartbeatRecorded {
        envelope: Envelope::new::<HeartbeatRecorded>(node_id, ts_ms),
        seq,
        interval_secs: 10,
        uptime_secs: 100 + seq,
        cpu_pct: 10.0 + (seq % 50) as f32,
        cpu_count: 4,
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
        mem_total_bytes: 8 << 30,
        mem_used_bytes: 2 << 30,
        swap_total_bytes: 0,
        swap_used_bytes: 0,
        disk_total_bytes: 100 << 30,
        disk_used_bytes: 10 << 30,
        net_rx_bytes_per_sec: 1000.0,
        net_tx_bytes_per_sec: 500.0,
        gpus: vec![],
    }
}

/// Publishes raw bytes on `subject` with a message id and awaits the ack.
pub async fn publish_raw(js: &Context, subject: String, msg_id: &str, payload: Vec<u8>) {
    Outgoing::new(subject, msg_id.to_owned(), payload)
        .publish(js)
        .await
        .expect("publish");
}

/// Publishes an event on `subject` with its event id as message id and awaits the ack.
pub async fn publish_event<E: nerve_schemas::Event>(js: &Context, subject: String, event: &E) {
    nerve_ingest::publish(js, subject, event)
        .await
        .expect("publish");
}

/// Publishes a heartbeat and awaits the ack.
pub async fn publish_heartbeat(js: &Context, hb: &HeartbeatRecorded) {
    publish_event(js, subjects::heartbeat(&hb.envelope.node_id), hb).await;
}

/// A plausible inventory report of a simulated node.
pub fn inventory(node_id: &str, hostname: &str, ts_ms: i64) -> nerve_schemas::InventoryReported {
    use nerve_schemas::{CpuInfo, Disk, InventoryReported, NetInterface};
    InventoryReported {
        envelope: Envelope::new::<InventoryReported>(node_id, ts_ms),
        hostname: hostname.into(),
        os_name: "Debian GNU/Linux".into(),
        os_version: "12".into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        boot_time_ms: ts_ms - 86_400_000,
        agent_version: "0.1.0".into(),
        cpu: CpuInfo {
            model: "Simulated CPU".into(),
            vendor: "Sim".into(),
            physical_cores: Some(32),
            logical_cores: 64,
            frequency_mhz: 3000,
            ..CpuInfo::default()
        },
        memory_total_bytes: 256 << 30,
        swap_total_bytes: 0,
        disks: vec![Disk {
            name: "/dev/nvme0n1".into(),
            mount_point: "/".into(),
            file_system: "ext4".into(),
            kind: "ssd".into(),
            total_bytes: 2 << 40,
            removable: false,
        }],
        interfaces: vec![NetInterface {
            name: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            addresses: vec!["10.0.0.1/16".into()],
            mtu: 9000,
            ..NetInterface::default()
        }],
        gpus: vec![],
        memory: None,
        block_devices: vec![],
        system: None,
        location: None,
        collector_errors: vec![],
    }
}

/// Publishes the judgement of an earlier liveness tracker: `node_id` went offline after its
/// heartbeat at `last_heartbeat_ms`.
pub async fn publish_went_offline(js: &Context, node_id: &str, last_heartbeat_ms: i64) {
    let now = nerve_platform::now_ms();
    let event = nerve_schemas::NodeWentOffline(nerve_schemas::LivenessChange {
        envelope: Envelope::new::<nerve_schemas::NodeWentOffline>(node_id, now),
        last_heartbeat_at_ms: last_heartbeat_ms,
        silent_for_ms: now - last_heartbeat_ms,
        heartbeat_interval_secs: 10,
        missed_heartbeats: ((now - last_heartbeat_ms) / 10_000) as i32,
        previous_state: "suspect".into(),
        detector: "test".into(),
    });
    publish_event(js, subjects::liveness(node_id), &event).await;
}

/// Publishes an inventory report and awaits the ack.
pub async fn publish_inventory(js: &Context, inv: &nerve_schemas::InventoryReported) {
    publish_event(js, subjects::inventory(&inv.envelope.node_id), inv).await;
}

/// Every message stored in `stream` now (only `subject`'s, when given), oldest first: the
/// subject and payload of each.
pub async fn stored_messages(
    js: &Context,
    stream: &str,
    subject: Option<&str>,
) -> Vec<(String, bytes::Bytes)> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    use futures::StreamExt;
    let stream = js.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject.unwrap_or_default().to_owned(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.expect("messages");
    let mut all = Vec::new();
    for _ in 0..pending {
        let message = messages.next().await.expect("message").expect("ok");
        all.push((message.subject.to_string(), message.payload.clone()));
    }
    all
}

/// The sum of the sample lines of an OpenMetrics text that start with `prefix` (a name, or a
/// name with the start of its labels); 0 when none.
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}
