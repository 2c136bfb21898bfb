//! [`AppState`]: what every handler and service can reach — ClickHouse, the event log, the
//! config, metrics, the fleet snapshot and alerting's context. Cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use nerve_ingest::EventLog;
use nerve_platform::config::{ApiConfig, SmtpConfig};
use nerve_platform::metrics::Registry;
use nerve_schemas::Event;

use crate::error::ApiError;
use crate::snapshot::Snapshots;

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
}

impl AppState {
    /// `nats` is optional: without it, health reports NATS as not configured. `smtp` is the
    /// relay a channel's test send uses (`[alerts.smtp]`).
    pub fn new(
        ch: clickhouse::Client,
        nats: Option<async_nats::Client>,
        config: ApiConfig,
        smtp: SmtpConfig,
        metrics: Registry,
    ) -> Self {
        let max_age = Duration::from_millis(config.fleet_snapshot_max_age_ms);
        Self {
            inner: Arc::new(Inner {
                alerts: nerve_alerts::Context::new(ch.clone(), nats.clone(), smtp),
                snapshots: Snapshots::new(ch.clone(), max_age, &metrics),
                log: EventLog::new(nats.clone()),
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
    pub fn snapshots(&self) -> &Arc<Snapshots> {
        &self.inner.snapshots
    }
    pub fn alerts(&self) -> &nerve_alerts::Context {
        &self.inner.alerts
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
