//! Retention: ClickHouse 18.16 has no TTL, so `nerve project` drops whole partitions of the
//! time-series tables once all of a partition lies past its table's window
//! ([`RetentionConfig`]: raw heartbeats 7 days, inventory reports 30, roll-ups per minute 90
//! and per hour 730 by default); everything else is kept. A rebuild leaves alone what retention
//! dropped ([`kept_from`]): folding the archive again must not bring it back.

use std::time::Duration;

use clickhouse::Client;
use nerve_platform::config::{ClickHouseConfig, RetentionConfig};
use nerve_platform::metrics::Registry;
use tokio_util::sync::CancellationToken;

use crate::heartbeats::HEARTBEATS;
use crate::inventory::INVENTORY_LOG;
use crate::rollups::{HEARTBEATS_1H, HEARTBEATS_1M};

/// The tables retention trims: (table, monthly partitions, its window in days; 0: kept).
pub fn windows(cfg: &RetentionConfig) -> [(&'static str, bool, u64); 4] {
    [
        (HEARTBEATS, false, cfg.heartbeats_days),
        (INVENTORY_LOG, false, cfg.inventory_days),
        (HEARTBEATS_1M, false, cfg.minute_rollup_days),
        (HEARTBEATS_1H, true, cfg.hour_rollup_days),
    ]
}

/// The first partition id of `table` retention keeps at `now_ms`: every partition before it
/// lies wholly more than the table's window ago. `None`: the table is kept whole.
pub fn kept_from(table: &str, cfg: &RetentionConfig, now_ms: i64) -> Option<String> {
    let (_, monthly, days) = windows(cfg).into_iter().find(|(t, ..)| *t == table)?;
    if days == 0 {
        return None;
    }
    let cutoff = now_ms.saturating_sub(days.saturating_mul(86_400_000) as i64);
    let t = time::OffsetDateTime::from_unix_timestamp(cutoff.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let month = u8::from(t.month());
    Some(match monthly {
        true => format!("{:04}{month:02}", t.year()),
        false => format!("{:04}{month:02}{:02}", t.year(), t.day()),
    })
}

/// A partition dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub table: &'static str,
    pub partition_id: String,
}

/// Drops every partition of `db`'s trimmed tables that lies past its window at `now_ms`. On a
/// cluster (`cluster` not empty) the partitions are those of any server's local tables, each
/// dropped `ON CLUSTER` (replication drops it on the other replicas of a shard).
pub async fn run_once(
    ch: &Client,
    db: &str,
    cluster: &str,
    cfg: &RetentionConfig,
    now_ms: i64,
) -> Result<Vec<Dropped>, clickhouse::error::Error> {
    let mut dropped = Vec::new();
    for (table, ..) in windows(cfg) {
        let Some(floor) = kept_from(table, cfg, now_ms) else {
            continue;
        };
        let (parts, local) = if cluster.is_empty() {
            ("system.parts".to_owned(), table.to_owned())
        } else {
            (
                format!("cluster('{cluster}', system, parts)"),
                format!("{table}_local"),
            )
        };
        let old: Vec<String> = ch
            .query(&format!(
                "SELECT DISTINCT partition_id FROM {parts} \
                 WHERE database = ? AND table = ? AND active AND partition_id < ? \
                 ORDER BY partition_id"
            ))
            .bind(db)
            .bind(&local)
            .bind(&floor)
            .fetch_all()
            .await?;
        for id in old {
            let done = if cluster.is_empty() {
                crate::partitions::take(ch, db, db, table, &id, false).await?
            } else {
                crate::partitions::drop_on_cluster(ch, db, &local, cluster, &id).await?
            };
            if done {
                tracing::info!(table, partition_id = %id, "dropped past retention");
                dropped.push(Dropped {
                    table,
                    partition_id: id,
                });
            }
        }
    }
    Ok(dropped)
}

/// Runs [`run_once`] every `interval_secs` until `cancel`; a failed run is logged and counted,
/// and the next one tries again.
pub async fn run(
    clickhouse: &ClickHouseConfig,
    cfg: &RetentionConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) {
    let ch = nerve_platform::clickhouse::server_client(clickhouse);
    let runs = metrics.counter(
        "nerve_retention_runs_total",
        "Retention runs, by outcome",
        &[("outcome", "ok")],
    );
    let failures = metrics.counter(
        "nerve_retention_runs_total",
        "Retention runs, by outcome",
        &[("outcome", "failed")],
    );
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match run_once(
            &ch,
            &clickhouse.database,
            &clickhouse.cluster,
            cfg,
            nerve_platform::now_ms(),
        )
        .await
        {
            Ok(dropped) => {
                runs.inc();
                for d in dropped {
                    metrics
                        .counter(
                            "nerve_retention_partitions_dropped_total",
                            "Partitions dropped past their table's retention",
                            &[("table", d.table)],
                        )
                        .inc();
                }
            }
            Err(e) => {
                failures.inc();
                tracing::warn!(error = %e, "retention run failed; the next one tries again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_kept_while_any_of_it_lies_inside_the_window() {
        let cfg = RetentionConfig::default();
        // 2026-12-03T12:00:00Z
        let now = 1_796_299_200_000;
        assert_eq!(
            kept_from(HEARTBEATS, &cfg, now).as_deref(),
            Some("20261126")
        );
        assert_eq!(
            kept_from(HEARTBEATS_1H, &cfg, now).as_deref(),
            Some("202412")
        );
        assert_eq!(kept_from("alert_log", &cfg, now), None);
        let keep = RetentionConfig {
            heartbeats_days: 0,
            ..cfg
        };
        assert_eq!(kept_from(HEARTBEATS, &keep, now), None);
    }
}
