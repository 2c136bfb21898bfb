//! What alerting needs from the outside: ClickHouse to read rules, silences, channels and
//! conditions; the event log to record changes, alerts and delivery attempts; the SMTP relay;
//! the key file that seals channel secrets and URLs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nerve_ingest::EventLog;
use nerve_platform::config::{AlertsConfig, SmtpConfig};
use nerve_platform::secrets::Sealer;
use nerve_schemas::Event;

use crate::AlertsError;

/// Cheap to clone.
#[derive(Clone)]
pub struct Context {
    ch: clickhouse::Client,
    log: EventLog,
    smtp: Arc<SmtpConfig>,
    key_file: PathBuf,
    /// The key file, once read.
    sealer: Arc<Mutex<Option<Arc<Sealer>>>>,
}

/// A change recorded in the event log: its event and the id of the thing it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub event_id: String,
    pub id: String,
}

impl Context {
    /// `nats` is optional for reads; changes and the evaluator need it. From `config`: the
    /// SMTP relay and the secrets key file (read when first needed).
    pub fn new(
        ch: clickhouse::Client,
        nats: Option<async_nats::Client>,
        config: &AlertsConfig,
    ) -> Self {
        Self {
            ch,
            log: EventLog::new(nats),
            smtp: Arc::new(config.smtp.clone()),
            key_file: config.secrets_key_file.clone(),
            sealer: Arc::default(),
        }
    }

    /// The keys that seal and open channel secrets (read from the key file once it exists).
    pub fn sealer(&self) -> Result<Arc<Sealer>, AlertsError> {
        let mut cached = self.sealer.lock().expect("sealer lock");
        if let Some(sealer) = cached.as_ref() {
            return Ok(sealer.clone());
        }
        let sealer = Arc::new(Sealer::load(&self.key_file)?);
        *cached = Some(sealer.clone());
        Ok(sealer)
    }

    pub fn ch(&self) -> &clickhouse::Client {
        &self.ch
    }

    pub(crate) fn smtp(&self) -> &SmtpConfig {
        &self.smtp
    }

    pub(crate) fn log(&self) -> &EventLog {
        &self.log
    }

    /// Records `event` in the event log.
    pub(crate) async fn publish<E: Event>(
        &self,
        subject: String,
        event: &E,
    ) -> Result<(), AlertsError> {
        self.log.publish(subject, event).await?;
        Ok(())
    }

    /// Records a change to the thing `id` names.
    pub(crate) async fn record<E: Event>(
        &self,
        subject: String,
        event: &E,
        id: String,
    ) -> Result<Recorded, AlertsError> {
        self.publish(subject, event).await?;
        Ok(Recorded {
            event_id: event.envelope().event_id.clone(),
            id,
        })
    }
}
