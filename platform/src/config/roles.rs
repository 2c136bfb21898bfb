//! The control-plane roles' sections of the config: the alert evaluator (with its SMTP relay
//! and secrets key), the API and console, the task dispatcher, `nerve dev`, the `/metrics`
//! listener and the Kafka bridge.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The task dispatcher (in `nerve project`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// The seed (nkey) every task offer is signed with; created (mode 0600) when missing. Its
    /// public key goes into every agent's `agent.dispatch_public_key`.
    pub signing_key_file: PathBuf,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            signing_key_file: PathBuf::from(".nerve/dispatch.seed"),
        }
    }
}

/// The alert evaluator (runs with `nerve project`): evaluates every enabled rule, publishes
/// `AlertFired` / `AlertResolved`, and notifies the rules' channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Run the evaluator in `nerve project`. Run exactly one per deployment: set it false on
    /// every further projector process.
    pub enabled: bool,
    /// How often every rule is evaluated, in milliseconds.
    pub eval_interval_ms: u64,
    /// Most alerts listed in one notification (the rest are counted).
    pub max_alerts_per_notification: usize,
    /// The SMTP relay email channels deliver through (the evaluator and the API's test send).
    pub smtp: SmtpConfig,
    /// The key file that seals channel secrets and URLs (and opens a sealed SMTP password).
    /// `nerve serve` and `nerve dev` create it (mode 0600) when missing; every process that
    /// delivers notifications needs the same file.
    pub secrets_key_file: PathBuf,
    /// Channels (names or ids) told by the built-in `remediation-breaker` rule when the
    /// remediation circuit breaker trips (it fires until an admin resets the breaker).
    pub remediation_breaker_channels: Vec<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            eval_interval_ms: 15_000,
            max_alerts_per_notification: 200,
            smtp: SmtpConfig::default(),
            secrets_key_file: PathBuf::from(".nerve/secrets.key"),
            remediation_breaker_channels: Vec::new(),
        }
    }
}

/// `[alerts.smtp]`: the relay email channels deliver through.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host; empty: email channels cannot deliver.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Require STARTTLS.
    pub starttls: bool,
    /// Login; empty: no AUTH.
    pub username: String,
    /// Prefer the environment: `NERVE_ALERTS__SMTP__PASSWORD`.
    pub password: String,
    /// The From address of every message.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            starttls: true,
            username: String::new(),
            password: String::new(),
            from: "nerve@localhost".into(),
        }
    }
}

/// The password is a secret: never in logs.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("from", &self.from)
            .finish()
    }
}

/// The API and console server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the HTTP server listens on.
    pub listen_addr: SocketAddr,
    /// Most nodes one page of `/api/v1/nodes` returns.
    pub max_page_size: u32,
    /// Most points one metrics query returns.
    pub max_series_points: u32,
    /// The node list and fleet summary answer from an in-memory snapshot of every node no older
    /// than this; past half of it the snapshot is reloaded behind the requests that use it.
    /// 0: every request reads ClickHouse (concurrent requests share one read).
    pub fleet_snapshot_max_age_ms: u64,
    /// Directory holding the console's wasm bundle (`pkg/nerve_ui.js` and `pkg/nerve_ui_bg.wasm`, built by
    /// `infra/dev/build-web.sh`). Without it pages render on the server but do not hydrate.
    pub site_dir: PathBuf,
    /// Lifetime of a new token when the request names none.
    pub token_default_ttl_secs: u64,
    /// Longest lifetime a token may be given.
    pub token_max_ttl_secs: u64,
    /// Where `nerve serve` writes the first admin token when no admin token exists (mode
    /// 0600). Empty: `<dev.data_dir>/admin.token`.
    pub admin_token_file: PathBuf,
    /// Serve HTTPS only, with this certificate chain and key (PEM); both empty: plain HTTP.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// The NATS authority's directory (its operator and account keys, mode 0600 files): with
    /// it, the API enrolls nodes and issues, renews and revokes their NATS credentials. Empty:
    /// no enrollment. `nerve dev` sets it up under its data dir.
    pub nats_authority_dir: PathBuf,
    /// Lifetime of an enrollment token when the request names none.
    pub enrollment_default_ttl_secs: u64,
    /// Longest lifetime an enrollment token may be given.
    pub enrollment_max_ttl_secs: u64,
    /// Most nodes one enrollment token may enroll.
    pub enrollment_max_uses: u32,
    /// Lifetime of a node's NATS credentials (agents renew at two thirds of it).
    pub node_credentials_ttl_secs: u64,
    /// Longest a change's answer waits for the projection it affects to apply it (read your
    /// writes); 0: answer at once. The answer says which position it waited for.
    pub applied_wait_ms: u64,
    /// The agent install script (`GET /install.sh`): the URL nodes reach this API at (empty:
    /// the scheme and host the script was fetched with), the NATS URL agents connect to
    /// (empty: this server's `nats.url`) and the binary served at `/download/nerve` (empty:
    /// this server's own executable, which runs `nerve agent` too).
    pub public_url: String,
    pub agent_nats_url: String,
    pub agent_binary: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_page_size: 1000,
            max_series_points: 10_000,
            fleet_snapshot_max_age_ms: 5_000,
            site_dir: PathBuf::from("site"),
            token_default_ttl_secs: 90 * 24 * 3600,
            token_max_ttl_secs: 400 * 24 * 3600,
            admin_token_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            public_url: String::new(),
            agent_nats_url: String::new(),
            agent_binary: PathBuf::new(),
            nats_authority_dir: PathBuf::new(),
            enrollment_default_ttl_secs: 3600,
            enrollment_max_ttl_secs: 24 * 3600,
            enrollment_max_uses: 100_000,
            node_credentials_ttl_secs: 24 * 3600,
            applied_wait_ms: 5_000,
        }
    }
}

/// `nerve dev`: everything on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevConfig {
    /// Directory for NATS, ClickHouse and agent data; kept across restarts.
    pub data_dir: PathBuf,
    /// Start nats-server as a child, listening on the port of `nats.url`.
    pub start_nats: bool,
    /// Start ClickHouse as a child, listening on the port of `clickhouse.url`.
    pub start_clickhouse: bool,
    /// Run an agent for this machine inside the dev process.
    pub run_agent: bool,
    /// Run the API and NATS over TLS with a local CA kept in `<data_dir>/tls` (unless
    /// `api.tls_*` / `nats.tls_ca_file` are set already).
    pub tls: bool,
    /// Archive every stream into `<data_dir>/archive` (unless `archive.dir` is set).
    pub archive: bool,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".nerve"),
            start_nats: true,
            start_clickhouse: true,
            run_agent: true,
            tls: true,
            archive: true,
        }
    }
}

/// The archive (runs with `nerve project`, one per deployment): every stream's events sealed
/// into Avro container files per stream and hour, kept after the streams expire them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Run the archiver in this `nerve project` (one per deployment).
    pub enabled: bool,
    /// The archive's directory (files, manifests); `nerve dev` uses `<data_dir>/archive`.
    pub dir: PathBuf,
    /// Span of publish time one file holds (aligned to the epoch): an hour by default.
    pub file_secs: u64,
    /// A file is sealed this long after its span ends once the archiver has read all there is
    /// (an event of a later span seals it at once).
    pub seal_grace_secs: u64,
    /// The built-in `archive-lag` alert (critical) fires when the oldest event not yet sealed
    /// is this old, in percent of its stream's `max_age`; 0: no such alert.
    pub alert_lag_pct: f64,
    /// Channels (names or ids) the `archive-lag` alert is sent to; empty: it is recorded and
    /// shown, not sent.
    pub alert_channels: Vec<String>,
    /// Seal into S3-compatible object storage instead of `dir` (which then holds only the
    /// files being written).
    pub s3: S3Config,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …) for the archive.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; empty: no object storage (the archive is `archive.dir`).
    pub bucket: String,
    /// Key prefix the archive lives under (`nerve/archive`); empty: the bucket's root.
    pub prefix: String,
    /// An S3-compatible server's URL (`https://minio.example:9000`); empty: AWS.
    pub endpoint: String,
    /// The bucket's region; empty: `AWS_REGION`, else `us-east-1`.
    pub region: String,
    /// A TOML file with `access_key_id` and `secret_access_key` (readable by nerve only);
    /// empty: the `AWS_*` environment variables, else the instance's role.
    pub credentials_file: PathBuf,
}

/// An S3 access key, as `archive.s3.credentials_file` holds it. Never printed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Whether the archive goes to object storage.
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }

    /// The access key from `credentials_file` (None: none is configured).
    pub fn credentials(&self) -> Result<Option<S3Credentials>, super::ConfigError> {
        use figment::providers::{Format, Toml};
        let path = &self.credentials_file;
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        if !path.is_file() {
            return Err(super::ConfigError::Missing(path.clone()));
        }
        figment::Figment::from(Toml::file(path))
            .extract()
            .map(Some)
            .map_err(|e| {
                super::ConfigError::Invalid(format!(
                    "archive.s3.credentials_file {}: {}",
                    path.display(),
                    e.kind
                ))
            })
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("archive"),
            file_secs: 3600,
            seal_grace_secs: 10,
            alert_lag_pct: 50.0,
            alert_channels: Vec::new(),
            s3: S3Config::default(),
        }
    }
}

/// Retention, run by `nerve project`: ClickHouse 18.16 has no TTL, so whole partitions of the
/// time-series tables are dropped once they lie past their table's window. 0 days: kept.
/// Control, tasks, alerts, audit and node events are always kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Run the retention job in this `nerve project` (dropping is idempotent: more than one
    /// instance running it does no harm).
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Raw heartbeats (`heartbeats`, daily partitions).
    pub heartbeats_days: u64,
    /// Every inventory report (`inventory_log`, daily; `inventory` keeps each node's latest).
    pub inventory_days: u64,
    /// Heartbeats per node and minute (`heartbeats_1m`, daily partitions).
    pub minute_rollup_days: u64,
    /// Heartbeats per node and hour (`heartbeats_1h`, monthly partitions).
    pub hour_rollup_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 3600,
            heartbeats_days: 7,
            inventory_days: 30,
            minute_rollup_days: 90,
            hour_rollup_days: 730,
        }
    }
}

/// The singleton roles of `nerve project` (liveness tracker, alert evaluator, archiver): any
/// number of instances may run; each role runs in the one holding its lease in NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SingletonsConfig {
    /// The lease: renewed every third of it; a holder that dies is replaced within two.
    pub lease_secs: u64,
}

impl Default for SingletonsConfig {
    fn default() -> Self {
        Self { lease_secs: 6 }
    }
}

/// Remediation (runs with `nerve project`, in the one instance holding its lease): policies
/// that act on what agents see, held by a circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemediationConfig {
    /// Run the remediation engine.
    pub enabled: bool,
    /// Save the default policies (from NVIDIA's XID catalogue) when none was ever saved.
    pub install_defaults: bool,
    /// The breaker: within `breaker_window_secs` at most `breaker_max_nodes` nodes in all, and
    /// at most `breaker_max_pct` % of any cluster (the whole fleet for nodes in none; at least
    /// one node), enter remediation; past either, policies stop acting until an admin resets
    /// it.
    pub breaker_max_nodes: usize,
    pub breaker_max_pct: f64,
    pub breaker_window_secs: u64,
    /// How often policies are re-read and GPU verdicts polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a node has to accept a ladder's task.
    pub task_accept_deadline_secs: u32,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            install_defaults: true,
            breaker_max_nodes: 10,
            breaker_max_pct: 5.0,
            breaker_window_secs: 600,
            poll_interval_ms: 2_000,
            task_accept_deadline_secs: 30,
        }
    }
}

/// The `/metrics` listener of `nerve project` and `nerve agent` (`nerve serve` answers
/// `/metrics` on its API port).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `GET /metrics` on; empty: no listener.
    pub listen_addr: String,
}

impl MetricsConfig {
    /// The address to listen on, when one is set.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.listen_addr.parse().ok()
    }
}

/// `nerve bridge`: mirrors of the log into other systems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    pub kafka: KafkaBridgeConfig,
}

/// `nerve bridge kafka`: which streams go to which Kafka, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaBridgeConfig {
    /// `host:port,…` of the Kafka brokers.
    pub brokers: String,
    /// The JetStream streams mirrored, each to its own topic.
    pub streams: Vec<String>,
    /// Topics are `<topic_prefix><stream without NERVE_, lowercased>` (`nerve.telemetry`).
    pub topic_prefix: String,
    /// Partitions and replication of a topic the bridge creates (an existing one is kept).
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// Messages fetched and produced per round (each acked after its delivery report).
    pub batch_max_events: usize,
    /// The producer's `linger.ms`.
    pub linger_ms: u64,
    /// Further librdkafka settings (`security.protocol`, `ssl.ca.location`, `sasl.*`, …).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaBridgeConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            streams: vec!["NERVE_TELEMETRY".into(), "NERVE_EVENTS".into()],
            topic_prefix: "nerve.".into(),
            topic_partitions: 12,
            topic_replication: 1,
            batch_max_events: 5_000,
            linger_ms: 5,
            properties: std::collections::BTreeMap::new(),
        }
    }
}
