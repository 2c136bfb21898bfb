//! The server half of the API: state, router, error mapping and the fleet read service.

pub mod alerting;
pub mod clusters;
pub mod error;
pub mod extract;
pub mod fleet;
mod routes;
pub mod snapshot;
pub mod tasks;

use std::sync::Arc;

use nerve_platform::config::{ApiConfig, SmtpConfig};
use nerve_platform::metrics::Registry;
use tokio_util::sync::CancellationToken;

pub use routes::router;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    ch: clickhouse::Client,
    nats: Option<async_nats::Client>,
    config: ApiConfig,
    metrics: Registry,
    snapshots: snapshot::Snapshots,
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
        Self {
            inner: Arc::new(Inner {
                alerts: nerve_alerts::Context::new(ch.clone(), nats.clone(), smtp),
                ch,
                nats,
                config,
                snapshots: snapshot::Snapshots::new(&metrics),
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
    pub(crate) fn snapshots(&self) -> &snapshot::Snapshots {
        &self.inner.snapshots
    }
    /// Records `event` in the event log.
    pub(crate) async fn publish<E: nerve_schemas::Event>(
        &self,
        subject: String,
        event: &E,
    ) -> Result<(), error::ApiError> {
        let client = self
            .nats()
            .ok_or_else(|| error::ApiError::Unavailable("no event log configured".into()))?;
        let js = async_nats::jetstream::new(client.clone());
        nerve_ingest::publish(&js, subject, event).await?;
        Ok(())
    }
    pub fn alerts(&self) -> &nerve_alerts::Context {
        &self.inner.alerts
    }
}

/// Serves `app` on `listener` until `cancel`, finishing in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
