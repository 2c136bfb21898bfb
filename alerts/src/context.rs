//! What alerting needs from the outside: ClickHouse to read rules, silences, channels and
//! conditions; the event log to record changes, alerts and delivery attempts; the SMTP relay.

use std::sync::Arc;

use nerve_ingest::EventLog;
use nerve_platform::config::SmtpConfig;
use nerve_schemas::Event;

use crate::AlertsError;

/// Cheap to clone.
#[derive(Clone)]
pub struct Context {
    ch: clickhouse::Client,
    log: EventLog,
    smtp: Arc<SmtpConfig>,
}

/// A change recorded in the event log: its event and the id of the thing it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub event_id: String,
    pub id: String,
}

impl Context {
    /// `nats` is optional for reads; changes and the evaluator need it.
    pub fn new(ch: clickhouse::Client, nats: Option<async_nats::Client>, smtp: SmtpConfig) -> Self {
        Self {
            ch,
            log: EventLog::new(nats),
            smtp: Arc::new(smtp),
        }
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
