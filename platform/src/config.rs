//! Nerve's configuration: one strict TOML file (unknown keys are errors), layered as
//! defaults → file → environment (`NERVE_<SECTION>__<KEY>`, e.g. `NERVE_AGENT__HEARTBEAT_INTERVAL_SECS=5`).
//!
//! Every field documents its unit in its name. `infra/nerve.example.toml` lists them all and is
//! parsed by a test.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

mod roles;

pub use roles::{
    AlertsConfig, ApiConfig, ArchiveConfig, BridgeConfig, DevConfig, DispatchConfig,
    KafkaBridgeConfig, MetricsConfig, RemediationConfig, RetentionConfig, S3Config, S3Credentials,
    SingletonsConfig, SmtpConfig,
};

/// The whole configuration of every Nerve process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub streams: StreamsConfig,
    pub agent: AgentConfig,
    pub projector: ProjectorConfig,
    pub liveness: LivenessConfig,
    pub alerts: AlertsConfig,
    pub api: ApiConfig,
    pub dev: DevConfig,
    pub dispatch: DispatchConfig,
    pub archive: ArchiveConfig,
    pub retention: RetentionConfig,
    pub singletons: SingletonsConfig,
    pub remediation: RemediationConfig,
    pub metrics: MetricsConfig,
    pub bridge: BridgeConfig,
}

/// Where NATS is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// Optional NATS credentials file (`.creds`).
    pub credentials_file: Option<PathBuf>,
    /// The CA (PEM) the server's certificate must chain to; set: TLS is required.
    pub tls_ca_file: PathBuf,
    /// After losing its server an agent waits a random time within this window before its
    /// first reconnect (the window doubles with each failed try, up to 30 s), so a fleet that
    /// lost a broker at once comes back spread out instead of all in the same second. The
    /// control-plane roles use at most 250 ms.
    pub reconnect_spread_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            tls_ca_file: PathBuf::new(),
            reconnect_spread_ms: 5_000,
        }
    }
}

/// Where ClickHouse is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP endpoint; several, comma-separated, are tried in order when connecting
    /// (the servers of a cluster: any one of them takes reads and writes).
    pub url: String,
    /// Database holding every Nerve table; created at start.
    pub database: String,
    /// ClickHouse user.
    pub user: String,
    /// ClickHouse password (prefer the environment: `NERVE_CLICKHOUSE__PASSWORD`).
    pub password: String,
    /// A cluster of the servers' `remote_servers`; set, every table is a
    /// `Replicated*MergeTree` per shard (`<table>_local`) under a `Distributed` table of the
    /// table's name, created `ON CLUSTER`. Empty: one server, plain tables.
    pub cluster: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "nerve".into(),
            user: "default".into(),
            password: String::new(),
            cluster: String::new(),
        }
    }
}

/// JetStream stream settings, applied idempotently at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// How long heartbeats stay in the telemetry stream.
    pub telemetry_max_age_secs: u64,
    /// How long inventory reports stay in the inventory stream.
    pub inventory_max_age_secs: u64,
    /// Inventory reports kept per node (older ones are dropped first); 0 = no limit.
    pub inventory_max_per_node: i64,
    /// How long node events (GPU XIDs, liveness changes) stay in the events stream.
    pub events_max_age_secs: u64,
    /// How long task events (requests, per-node progress and output) stay in the tasks stream.
    pub tasks_max_age_secs: u64,
    /// How long control events (clusters, membership, labels) stay; 0 = forever (they are the
    /// only record of how the fleet is organised).
    pub control_max_age_secs: u64,
    /// How long alert firings and resolutions stay in the alerts stream. An alert open for
    /// longer than this is forgotten by a restarted evaluator (and fires again if it still
    /// holds).
    pub alerts_max_age_secs: u64,
    /// How long token events (issued, revoked, used) stay; 0 = forever. Every API instance
    /// folds this stream to know the tokens, so a token older than this would be forgotten.
    pub auth_max_age_secs: u64,
    /// How long audit entries stay in the audit stream; 0 = forever.
    pub audit_max_age_secs: u64,
    /// Window in which a re-published event id is dropped as a duplicate.
    pub duplicate_window_secs: u64,
    /// Stream replicas (1 for a single server, 3 for a JetStream cluster).
    pub replicas: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            telemetry_max_age_secs: 7 * 24 * 3600,
            inventory_max_age_secs: 30 * 24 * 3600,
            inventory_max_per_node: 1000,
            events_max_age_secs: 90 * 24 * 3600,
            tasks_max_age_secs: 30 * 24 * 3600,
            control_max_age_secs: 0,
            alerts_max_age_secs: 400 * 24 * 3600,
            auth_max_age_secs: 0,
            audit_max_age_secs: 0,
            duplicate_window_secs: 120,
            replicas: 1,
        }
    }
}

/// The node agent. Its `Debug` leaves out the enrollment token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory for the agent's state (its node id). Created if missing.
    pub state_dir: PathBuf,
    /// Seconds between heartbeats.
    pub heartbeat_interval_secs: u64,
    /// Seconds between inventory scans; a report is published only when something changed.
    pub inventory_interval_secs: u64,
    /// Seconds after which the inventory is published even if nothing changed (daily refresh).
    pub inventory_refresh_secs: u64,
    /// Events kept (on disk, in the state dir) while NATS is unreachable; beyond it the oldest
    /// are dropped and counted.
    pub buffer_max_events: usize,
    /// Bytes the outbox may hold; beyond it the oldest events are dropped and counted.
    pub buffer_max_bytes: u64,
    /// Events older than this are dropped from the outbox instead of published late.
    pub buffer_max_age_secs: u64,
    /// Seconds to wait for a publish acknowledgement before retrying.
    pub publish_timeout_secs: u64,
    /// Collect GPU inventory and metrics via NVML (needs the `gpu` build feature).
    pub gpu: bool,
    /// Where the host's procfs, sysfs and root filesystem are (an agent in a container sees the
    /// host's at e.g. `/host/proc`).
    pub procfs_path: PathBuf,
    pub sysfs_path: PathBuf,
    pub rootfs_path: PathBuf,
    /// Run tasks dispatched to this node (commands, scripts, hooks).
    pub tasks: bool,
    /// Directory of the executables a `hook` task may name.
    pub hooks_dir: PathBuf,
    /// Tasks run at once; more wait their turn (`TaskQueued` in the ledger). 0: no limit.
    pub max_concurrent_tasks: usize,
    /// Timeout of a task that names none, and the longest any task may run on this node (a
    /// longer one is stopped at it, as timed out).
    pub task_default_timeout_secs: u64,
    pub task_max_timeout_secs: u64,
    /// A task without a `working_dir` runs in its own directory under `state_dir/tasks`,
    /// removed this long after it ends (0: at once); leftovers of a crash are swept too.
    pub task_dir_keep_secs: u64,
    /// Where task processes live: `systemd` — each in a transient scope of its own in
    /// `nerve-tasks.slice`, outside the agent unit's limits, with the task's memory limit as
    /// the scope's `MemoryMax`; `none` — children of the agent; `auto` — `systemd` when the agent
    /// runs as root under systemd with `systemd-run` installed, else `none`.
    pub task_scope: String,
    /// Where the node is, reported with its inventory and published as its `region` and
    /// `datacenter` labels (filterable like any label; an operator's label of the same key wins).
    pub region: String,
    pub datacenter: String,
    /// This node's labels (`key = "value"`), published at start; operators can add more.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The control plane's public key (an nkey, `N…`) task offers must be signed with; offers
    /// signed otherwise, unsigned or replayed are refused and reported. Empty: every offer is
    /// refused. `nerve project` prints it; `nerve dev` sets it. Empty on an enrolled node:
    /// the key it pinned at enrollment.
    pub dispatch_public_key: String,
    /// An enrollment token: when the node has no NATS credentials yet (none in `state_dir`),
    /// the agent enrolls with it first (as `nerve agent --enroll <token>` does). Prefer the
    /// environment: `NERVE_AGENT__ENROLL_TOKEN`.
    pub enroll_token: String,
    /// The API the agent enrolls with and renews its credentials at (`https://host:8080`);
    /// kept in `state_dir` at enrollment.
    pub api_url: String,
    /// The CA (PEM) the API's certificate must chain to; empty: the system's roots.
    pub api_ca_file: PathBuf,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("state_dir", &self.state_dir)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("tasks", &self.tasks)
            .field("labels", &self.labels)
            .field("dispatch_public_key", &self.dispatch_public_key)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/nerve-agent"),
            heartbeat_interval_secs: 10,
            inventory_interval_secs: 60,
            inventory_refresh_secs: 24 * 3600,
            buffer_max_events: 100_000,
            buffer_max_bytes: 64 << 20,
            buffer_max_age_secs: 24 * 3600,
            publish_timeout_secs: 5,
            gpu: true,
            procfs_path: PathBuf::from("/proc"),
            sysfs_path: PathBuf::from("/sys"),
            rootfs_path: PathBuf::from("/"),
            tasks: true,
            hooks_dir: PathBuf::from("/etc/nerve/hooks"),
            max_concurrent_tasks: 8,
            task_default_timeout_secs: 300,
            task_max_timeout_secs: 86_400,
            task_dir_keep_secs: 3600,
            task_scope: "auto".into(),
            region: String::new(),
            datacenter: String::new(),
            labels: std::collections::BTreeMap::new(),
            dispatch_public_key: String::new(),
            enroll_token: String::new(),
            api_url: String::new(),
            api_ca_file: PathBuf::new(),
        }
    }
}

/// The projectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorConfig {
    /// Most events written to ClickHouse in one batch.
    pub batch_max_events: usize,
    /// Longest wait for a batch to fill before writing what arrived.
    pub batch_max_wait_ms: u64,
    /// Seconds JetStream waits for an ack before redelivering an event.
    pub ack_wait_secs: u64,
    /// Longest pause between retries after a failed ClickHouse write.
    pub retry_max_backoff_ms: u64,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 10_000,
            batch_max_wait_ms: 250,
            ack_wait_secs: 30,
            retry_max_backoff_ms: 5_000,
        }
    }
}

/// The liveness tracker (runs with `nerve project`): turns missing heartbeats into
/// `NodeBecameSuspect` / `NodeWentOffline` events and returning ones into `NodeCameBack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    /// Run the tracker in `nerve project` (one tracker per deployment is enough; more are harmless:
    /// they derive the same event ids and JetStream drops the duplicates).
    pub enabled: bool,
    /// A node is `suspect` after this many of its heartbeat intervals without a heartbeat.
    pub suspect_after_missed_heartbeats: u32,
    /// A suspect node is `offline` after this many further seconds of silence.
    pub offline_grace_secs: u64,
    /// How often silences are judged, in milliseconds.
    pub check_interval_ms: u64,
    /// After the tracker starts or NATS comes back, silence starts counting this much later:
    /// agents need a moment to reconnect (the NATS client backs off up to 4 s) and flush.
    pub resume_grace_secs: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            suspect_after_missed_heartbeats: 3,
            offline_grace_secs: 60,
            check_interval_ms: 1000,
            resume_grace_secs: 30,
        }
    }
}

impl Config {
    /// Where the first admin token is written: `api.admin_token_file`, or
    /// `<dev.data_dir>/admin.token`.
    pub fn admin_token_file(&self) -> PathBuf {
        if self.api.admin_token_file.as_os_str().is_empty() {
            self.dev.data_dir.join("admin.token")
        } else {
            self.api.admin_token_file.clone()
        }
    }

    /// Loads defaults, then `file` (if given; it must exist), then `NERVE_<SECTION>__<KEY>`
    /// variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Missing(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `NERVE_<SECTION>__<KEY>` is config; other NERVE_ variables (tool paths) are not.
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("NERVE_") && k.contains("__"))
            .collect();
        figment = figment.merge(Serialized::from(
            env_to_dict(&vars),
            figment::Profile::Default,
        ));
        moved_keys(&figment)?;
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads a config from TOML text alone (no environment), for checks and tests.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        moved_keys(&figment)?;
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !self.metrics.listen_addr.is_empty() && self.metrics.addr().is_none() {
            return bad("metrics.listen_addr is host:port (e.g. 0.0.0.0:9464), or empty for none");
        }
        if !matches!(self.agent.task_scope.as_str(), "auto" | "systemd" | "none") {
            return bad("agent.task_scope is auto, systemd or none");
        }
        if self.archive.file_secs == 0 || 86_400 % self.archive.file_secs != 0 {
            return bad("archive.file_secs must divide a day (3600: one file per stream and hour)");
        }
        if !(0.0..=100.0).contains(&self.archive.alert_lag_pct) {
            return bad("archive.alert_lag_pct is a percentage of max_age: 0 (off) to 100");
        }
        let s3 = &self.archive.s3;
        if s3.bucket.contains('/') {
            return bad("archive.s3.bucket is a bucket's name: put a path in archive.s3.prefix");
        }
        if !(s3.endpoint.is_empty()
            || s3.endpoint.starts_with("http://")
            || s3.endpoint.starts_with("https://"))
        {
            return bad("archive.s3.endpoint must be an http:// or https:// URL");
        }
        if self.singletons.lease_secs < 3 {
            return bad("singletons.lease_secs must be at least 3 (renewed every third of it)");
        }
        if self.retention.interval_secs == 0 {
            return bad("retention.interval_secs must be at least 1");
        }
        if self.agent.heartbeat_interval_secs == 0 {
            return bad("agent.heartbeat_interval_secs must be at least 1");
        }
        if self.agent.buffer_max_events == 0 {
            return bad("agent.buffer_max_events must be at least 1");
        }
        if self.projector.batch_max_events == 0 {
            return bad("projector.batch_max_events must be at least 1");
        }
        if self.projector.ack_wait_secs == 0 {
            return bad("projector.ack_wait_secs must be at least 1");
        }
        if self.projector.batch_max_wait_ms >= self.projector.ack_wait_secs.saturating_mul(1000) {
            // Otherwise JetStream redelivers a batch's first events while it is still filling.
            return bad("projector.batch_max_wait_ms must be shorter than projector.ack_wait_secs");
        }
        if self.liveness.suspect_after_missed_heartbeats == 0 {
            return bad("liveness.suspect_after_missed_heartbeats must be at least 1");
        }
        if self.alerts.eval_interval_ms == 0 {
            return bad("alerts.eval_interval_ms must be at least 1");
        }
        if self.alerts.max_alerts_per_notification == 0 {
            return bad("alerts.max_alerts_per_notification must be at least 1");
        }
        if self.liveness.check_interval_ms == 0 {
            return bad("liveness.check_interval_ms must be at least 1");
        }
        if self.nats.reconnect_spread_ms > 600_000 {
            return bad("nats.reconnect_spread_ms must be at most 600000 (10 minutes)");
        }
        if self.api.max_page_size == 0 {
            return bad("api.max_page_size must be at least 1");
        }
        if !self
            .clickhouse
            .database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || self.clickhouse.database.is_empty()
        {
            return bad("clickhouse.database must be a plain identifier ([A-Za-z0-9_]+)");
        }
        if !self
            .clickhouse
            .cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad("clickhouse.cluster must be a plain identifier ([A-Za-z0-9_]+) or empty");
        }
        if self.clickhouse.url.split(',').any(|u| u.trim().is_empty()) {
            return bad("clickhouse.url must be one or more comma-separated URLs, none empty");
        }
        Ok(())
    }
}

/// Keys that moved, with where they live now.
const MOVED: &[(&str, &str)] = &[
    ("api.smtp_host", "alerts.smtp.host"),
    ("api.smtp_port", "alerts.smtp.port"),
    ("api.smtp_starttls", "alerts.smtp.starttls"),
    ("api.smtp_username", "alerts.smtp.username"),
    ("api.smtp_password", "alerts.smtp.password"),
    ("api.smtp_from", "alerts.smtp.from"),
];

/// A moved key is an error that names its new place (rather than serde's "unknown field").
fn moved_keys(figment: &Figment) -> Result<(), ConfigError> {
    match MOVED.iter().find(|(old, _)| figment.contains(old)) {
        Some((old, new)) => Err(ConfigError::Invalid(format!(
            "{old} has moved: set {new} instead"
        ))),
        None => Ok(()),
    }
}

/// Turns `NERVE_SECTION__KEY=value` pairs into a nested dictionary. Each value is parsed as the
/// type the field has in the defaults (so a numeric-looking password stays a string); keys that
/// are not fields stay strings and are then rejected as unknown.
fn env_to_dict(vars: &[(String, String)]) -> figment::value::Dict {
    use figment::value::{Dict, Num, Value};
    let defaults = Value::serialize(Config::default()).ok();
    let mut root = Dict::new();
    for (key, raw) in vars {
        let Some(rest) = key.strip_prefix("NERVE_") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let expected = defaults.as_ref().and_then(|d| d.find_ref(&path.join(".")));
        let value = match expected {
            Some(Value::Bool(..)) => raw.parse::<bool>().map(Value::from).ok(),
            Some(Value::Num(_, Num::F32(_) | Num::F64(_))) => {
                raw.parse::<f64>().map(Value::from).ok()
            }
            Some(Value::Num(..)) => raw
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| raw.parse::<i64>().map(Value::from))
                .ok(),
            _ => None,
        }
        .unwrap_or_else(|| Value::from(raw.clone()));
        insert_path(&mut root, &path, value);
    }
    root
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [head, rest @ ..] => {
            let entry = dict
                .entry(head.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_with_env(None, env(&[])).expect("defaults");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn example_config_parses_and_sets_every_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/nerve.example.toml");
        let c = Config::load_with_env(Some(&path), env(&[])).expect("example config");
        assert_eq!(c.agent.heartbeat_interval_secs, 10);
        assert_eq!(c.clickhouse.database, "nerve");
        let text = std::fs::read_to_string(&path).expect("read");
        for section in [
            "[nats]",
            "[clickhouse]",
            "[streams]",
            "[agent]",
            "[projector]",
            "[api]",
            "[dev]",
        ] {
            assert!(text.contains(section), "example lacks {section}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_toml_str("[agent]\nheartbeat_intervl_secs = 5\n").unwrap_err();
        assert!(err.to_string().contains("heartbeat_intervl_secs"), "{err}");
        let err = Config::from_toml_str("[agnet]\n").unwrap_err();
        assert!(err.to_string().contains("agnet"), "{err}");
        let err = Config::load_with_env(None, env(&[("NERVE_AGENT__NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_moved_key_names_its_new_place() {
        let err = Config::from_toml_str("[api]\nsmtp_host = \"relay\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("api.smtp_host has moved: set alerts.smtp.host instead"),
            "{err}"
        );
        let err =
            Config::load_with_env(None, env(&[("NERVE_API__SMTP_PASSWORD", "x")])).unwrap_err();
        assert!(err.to_string().contains("alerts.smtp.password"), "{err}");
        let c = Config::load_with_env(None, env(&[("NERVE_ALERTS__SMTP__PORT", "2525")]))
            .expect("config");
        assert_eq!(c.alerts.smtp.port, 2525);
        assert!(
            !format!(
                "{:?}",
                SmtpConfig {
                    password: "hunter2".into(),
                    ..SmtpConfig::default()
                }
            )
            .contains("hunter2")
        );
    }

    #[test]
    fn environment_overrides_file_and_other_nerve_vars_are_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[agent]\nheartbeat_interval_secs = 7\ngpu = true\n").expect("write");
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("NERVE_AGENT__HEARTBEAT_INTERVAL_SECS", "3"),
                ("NERVE_AGENT__GPU", "false"),
                ("NERVE_CLICKHOUSE__PASSWORD", "12345"),
                ("NERVE_TOOLS_DIR", "/somewhere"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("load");
        assert_eq!(c.agent.heartbeat_interval_secs, 3);
        assert!(!c.agent.gpu);
        assert_eq!(c.clickhouse.password, "12345");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err =
            Config::from_toml_str("[agent]\nheartbeat_interval_secs = \"often\"\n").unwrap_err();
        assert!(err.to_string().contains("heartbeat_interval_secs"), "{err}");
        let err = Config::from_toml_str("[agent]\nheartbeat_interval_secs = 0\n").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = Config::from_toml_str("[clickhouse]\ndatabase = \"x; DROP\"\n").unwrap_err();
        assert!(err.to_string().contains("identifier"), "{err}");
        let err =
            Config::from_toml_str("[projector]\nack_wait_secs = 2\nbatch_max_wait_ms = 2000\n")
                .unwrap_err();
        assert!(err.to_string().contains("shorter than"), "{err}");
        assert!(matches!(
            Config::load_with_env(Some(Path::new("/no/such.toml")), env(&[])),
            Err(ConfigError::Missing(_))
        ));
    }
}
