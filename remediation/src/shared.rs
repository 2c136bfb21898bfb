//! What the engine and its runs share: ClickHouse, the event log (publishing with retries),
//! the channels notify steps tell, the engine's settings.

use std::time::Duration;

use clickhouse::Client;
use nerve_ingest::EventLog;
use nerve_platform::config::RemediationConfig;
use nerve_schemas::Event;

/// What runs share.
pub struct Shared {
    pub ch: Client,
    pub(crate) log: EventLog,
    pub(crate) alerts: nerve_alerts::Context,
    pub config: RemediationConfig,
    pub ledger_poll: Duration,
}

impl Shared {
    /// Publishes `event`, retrying a few times; whether it was stored.
    pub async fn publish<E: Event>(&self, subject: String, event: &E) -> bool {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=5 {
            match self.log.publish(subject.clone(), event).await {
                Ok(_) => return true,
                Err(e) if attempt == 5 => {
                    tracing::error!(subject, error = %e, "remediation event not recorded");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        false
    }

    /// Tells `channels` (names or ids); whether any delivered, and to whom.
    pub async fn notify(&self, channels: &[String], message: &str, node: &str) -> (bool, String) {
        let mut told = Vec::new();
        let mut failed = Vec::new();
        for key in channels {
            let delivered = match nerve_alerts::notify::find(&self.alerts, key).await {
                Ok(channel) => nerve_alerts::notify::deliver(
                    &self.alerts,
                    &channel,
                    "",
                    message,
                    serde_json::json!({"node_id": node, "source": "remediation"}),
                )
                .await
                .is_ok_and(|r| r.delivered),
                Err(_) => false,
            };
            match delivered {
                true => told.push(key.as_str()),
                false => failed.push(key.as_str()),
            }
        }
        let detail = match (told.is_empty(), failed.is_empty()) {
            (_, true) => format!("told {}", told.join(", ")),
            (true, false) => format!("not delivered to {}", failed.join(", ")),
            (false, false) => format!("told {}; not {}", told.join(", "), failed.join(", ")),
        };
        (!told.is_empty(), detail)
    }
}
