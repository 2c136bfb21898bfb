//! [`AppState`]: what every handler and service can reach — ClickHouse, the event log, the
//! config, metrics, the fleet snapshot, alerting's context, the token keyring, the audit
//! writer and (when set up) what issues nodes' NATS credentials. Cheap to clone. Creating one starts following the auth stream (until the last
//! clone is dropped).

use std::sync::Arc;
use std::time::Duration;

use nerve_ingest::EventLog;
use nerve_platform::config::{AlertsConfig, ApiConfig};
use nerve_platform::metrics::Registry;
use nerve_schemas::Event;

use crate::audit::Auditor;
use crate::auth::enroll::NodeTrust;
use crate::auth::keyring::{self, Keyring};
use crate::error::ApiError;
use crate::snapshot::Snapshots;

/// How often the token uses an instance saw are recorded.
const TOKEN_USE_FLUSH: Duration = Duration::from_secs(60);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    ch: clickhouse::Client,
    nats: Option<async_nats::Client>,
    log: EventLog,
    config: ApiConfig,
    metrics: Registry,
    snapshots: Arc<Snapshots>,
    alerts: nerve_alerts::Context,
    keyring: Arc<Keyring>,
    auditor: Auditor,
    /// When this instance started (ms since the epoch).
    started_ms: u64,
    /// Nodes' credentials (set when the API enrolls nodes).
    trust: std::sync::OnceLock<Arc<NodeTrust>>,
    /// Stops the auth stream's follower with the last clone.
    _follower: tokio_util::sync::DropGuard,
}

impl AppState {
    /// `nats` is optional: without it, health reports NATS as not configured (and no token
    /// can be checked). `alerts` gives the relay a channel's test send uses and the key file
    /// channel secrets are sealed with.
    pub fn new(
        ch: clickhouse::Client,
        nats: Option<async_nats::Client>,
        config: ApiConfig,
        alerts: AlertsConfig,
        metrics: Registry,
    ) -> Self {
        let max_age = Duration::from_millis(config.fleet_snapshot_max_age_ms);
        let log = EventLog::new(nats.clone());
        let keyring = Arc::new(Keyring::default());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(keyring::follow(keyring.clone(), log.clone(), stop.clone()));
        tokio::spawn(keyring::flush_uses(
            keyring.clone(),
            log.clone(),
            TOKEN_USE_FLUSH,
            stop.clone(),
        ));
        Self {
            inner: Arc::new(Inner {
                alerts: nerve_alerts::Context::new(ch.clone(), nats.clone(), &alerts),
                snapshots: Snapshots::new(ch.clone(), max_age, &metrics),
                auditor: Auditor::new(log.clone()),
                keyring,
                trust: std::sync::OnceLock::new(),
                started_ms: crate::time::now_ms(),
                _follower: stop.drop_guard(),
                log,
                ch,
                nats,
                config,
                metrics,
            }),
        }
    }

    pub fn ch(&self) -> &clickhouse::Client {
        &self.inner.ch
    }
    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.inner.nats.as_ref()
    }
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }
    pub fn metrics(&self) -> &Registry {
        &self.inner.metrics
    }
    /// When this instance started (ms since the epoch).
    pub fn started_ms(&self) -> u64 {
        self.inner.started_ms
    }
    pub fn snapshots(&self) -> &Arc<Snapshots> {
        &self.inner.snapshots
    }
    pub fn alerts(&self) -> &nerve_alerts::Context {
        &self.inner.alerts
    }
    /// Every operator token, as this instance has folded them.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }
    /// Lets this instance enroll nodes and issue, renew and revoke their NATS credentials
    /// (once; a second call is ignored).
    pub fn set_trust(&self, trust: Arc<NodeTrust>) {
        let _ = self.inner.trust.set(trust);
    }

    /// What node enrollment needs; unavailable when not set up.
    pub fn trust(&self) -> Result<&NodeTrust, ApiError> {
        self.inner.trust.get().map(|t| &**t).ok_or_else(|| {
            ApiError::Unavailable(
                "node enrollment is not set up here (api.nats_authority_dir is empty)".into(),
            )
        })
    }

    pub fn auditor(&self) -> &Auditor {
        &self.inner.auditor
    }
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Counts a refused call by reason (`nerve_api_auth_failures_total`).
    pub(crate) fn metrics_auth_failure(&self, reason: &str) {
        self.inner
            .metrics
            .counter(
                "nerve_api_auth_failures_total",
                "API and console calls refused with 401 or 403, by reason.",
                &[("reason", reason)],
            )
            .inc();
    }

    /// Records `event` in the event log.
    pub(crate) async fn publish<E: Event>(
        &self,
        subject: String,
        event: &E,
    ) -> Result<(), ApiError> {
        self.inner.log.publish(subject, event).await?;
        Ok(())
    }
}
