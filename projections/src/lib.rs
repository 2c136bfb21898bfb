//! Projectors: durable JetStream pull consumers that fold the event streams into ClickHouse read
//! models. Each projection is one module holding its fold, its table DDL and how it stays
//! idempotent; [`runner`] is the shared consume → write → ack loop.
//!
//! Every row carries the JetStream stream sequence it came from (`stream_seq`): that is the
//! projection's checkpoint, stored with what it wrote. Events are acked only after ClickHouse
//! accepted the batch; redelivered events are checked against the table by event id, so a crash
//! between write and ack creates no duplicate rows.

pub mod alerts;
pub mod audit;
pub mod cluster;
pub mod control;
pub mod heartbeats;
pub mod history;
pub mod inventory;
pub mod logged;
pub mod maintenance;
pub mod node_events;
pub mod partitions;
pub mod rejected;
pub mod remediation;
pub mod replay;
pub mod retention;
pub mod rollups;
pub mod runner;
pub mod scope;
pub mod tasks;

use std::time::Duration;

use async_nats::jetstream;
use nerve_platform::config::{ClickHouseConfig, ProjectorConfig};
use nerve_platform::metrics::Registry;
use tokio_util::sync::CancellationToken;

pub use runner::{Failpoint, ProjectorError, Runner, RunnerOptions};

/// Every projection's name (its durable consumer), in the order they are rebuilt.
pub const NAMES: [&str; 7] = [
    heartbeats::NAME,
    inventory::NAME,
    node_events::NAME,
    tasks::NAME,
    control::NAME,
    alerts::NAME,
    audit::NAME,
];

/// Evaluates `$body` with `$p` bound to the projection named `$name` (one of [`NAMES`]):
/// `Some(result)`, or `None` for another name.
#[macro_export]
macro_rules! with_projection {
    ($name:expr, $p:ident => $body:expr) => {{
        #[allow(unused_imports)]
        use $crate::runner::Projection as _;
        match $name {
            n if n == $crate::heartbeats::NAME => {
                let $p = $crate::heartbeats::HeartbeatProjection;
                Some($body)
            }
            n if n == $crate::inventory::NAME => {
                let $p = $crate::inventory::InventoryProjection;
                Some($body)
            }
            n if n == $crate::node_events::NAME => {
                let $p = $crate::node_events::NodeEventsProjection;
                Some($body)
            }
            n if n == $crate::tasks::NAME => {
                let $p = $crate::tasks::TaskProjection;
                Some($body)
            }
            n if n == $crate::control::NAME => {
                let $p = $crate::control::ControlProjection;
                Some($body)
            }
            n if n == $crate::alerts::NAME => {
                let $p = $crate::alerts::AlertsProjection;
                Some($body)
            }
            n if n == $crate::audit::NAME => {
                let $p = $crate::audit::AuditProjection;
                Some($body)
            }
            _ => None,
        }
    }};
}

/// Every table's DDL, in creation order, for database `db`.
pub fn all_ddl(db: &str) -> Vec<String> {
    let mut ddl = heartbeats::ddl(db);
    ddl.extend(inventory::ddl(db));
    ddl.extend(node_events::ddl(db));
    ddl.extend(tasks::ddl(db));
    ddl.extend(control::ddl(db));
    ddl.extend(alerts::ddl(db));
    ddl.extend(audit::ddl(db));
    ddl.extend(rejected::ddl(db));
    ddl
}

/// Index granularity of the per-node current-state tables with wide rows (`inventory`:
/// kilobytes of JSON; `node_state`: a kilobyte or two of Avro). A lookup of one node reads whole
/// granules from every active part, so the default 8,192 rows would decompress megabytes for one
/// node; at 32 a granule is about one compressed block. Tables created before keep their
/// granularity until rebuilt from the log.
pub const WIDE_ROW_GRANULARITY: u32 = 32;

/// Columns added to a table after it was first released: (table, column, type). The `CREATE`
/// statements have them; databases created before get them added at start (ClickHouse 18.16
/// has no `ADD COLUMN IF NOT EXISTS`, so the columns are looked up first).
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (heartbeats::HEARTBEATS, "gpu_health", "Array(String)"),
    (heartbeats::HEARTBEATS, "gpu_ecc_corrected", "Array(Int64)"),
    (
        heartbeats::HEARTBEATS,
        "gpu_ecc_uncorrected",
        "Array(Int64)",
    ),
    (
        heartbeats::HEARTBEATS,
        "gpu_remapped_rows_correctable",
        "Array(Int64)",
    ),
    (
        heartbeats::HEARTBEATS,
        "gpu_remapped_rows_uncorrectable",
        "Array(Int64)",
    ),
    (heartbeats::HEARTBEATS, "gpu_xid_total", "Array(Int64)"),
    (heartbeats::NODE_STATE, "gpu_health", "String"),
    (heartbeats::NODE_STATE, "heartbeat_avro", "String"),
    (inventory::INVENTORY, "detail_json", "String"),
];

/// Creates the database and every table if missing, and adds columns released later. Safe at
/// every start. On a cluster (`clickhouse.cluster`) the tables are the [`cluster`] forms,
/// created `ON CLUSTER`; those this server already has are not asked for again, so a start
/// with a server of the cluster down does not wait on its DDL queue.
pub async fn ensure_tables(config: &ClickHouseConfig) -> Result<(), clickhouse::error::Error> {
    nerve_platform::clickhouse::ensure_database(config).await?;
    let client = nerve_platform::clickhouse::server_client(config);
    let db = &config.database;
    if config.cluster.is_empty() {
        for statement in all_ddl(db) {
            client.query(&statement).execute().await?;
        }
    } else {
        let present: Vec<String> = client
            .query("SELECT name FROM system.tables WHERE database = ?")
            .bind(db.as_str())
            .fetch_all()
            .await?;
        for statement in all_ddl(db) {
            for statement in cluster::clustered(&statement, db, &config.cluster) {
                if cluster::created(&statement)
                    .is_some_and(|name| present.iter().any(|p| p == name))
                {
                    continue;
                }
                client.query(&statement).execute().await?;
            }
        }
    }
    let on_cluster = nerve_platform::clickhouse::on_cluster(config);
    for (table, column, ty) in ADDED_COLUMNS {
        let present: u64 = client
            .query(
                "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
            )
            .bind(db.as_str())
            .bind(*table)
            .bind(*column)
            .fetch_one()
            .await?;
        if present == 0 {
            tracing::info!(table, column, "adding column released after the table");
            // On a cluster the replicated tables first, then the distributed one over them.
            let tables = if config.cluster.is_empty() {
                vec![table.to_string()]
            } else {
                vec![format!("{table}_local"), table.to_string()]
            };
            for t in tables {
                client
                    .query(&format!(
                        "ALTER TABLE {db}.{t}{on_cluster} ADD COLUMN {column} {ty}"
                    ))
                    .execute()
                    .await?;
            }
        }
    }
    Ok(())
}

/// Runs every projector until `cancel`, each draining its current batch before it returns.
pub async fn run_all(
    js: jetstream::Context,
    ch: ClickHouseConfig,
    config: ProjectorConfig,
    metrics: Registry,
    failpoint: Option<Failpoint>,
    cancel: CancellationToken,
) -> Result<(), ProjectorError> {
    ensure_tables(&ch).await.map_err(ProjectorError::Setup)?;
    let options = RunnerOptions::from_config(&config, failpoint);
    let ack_wait = Duration::from_secs(config.ack_wait_secs);
    let client = nerve_platform::clickhouse::client(&ch);
    // One runner per projection, each with its own durable consumer.
    macro_rules! runner {
        ($projection:expr) => {
            Runner::new(
                $projection,
                &js,
                client.clone(),
                ack_wait,
                options.clone(),
                &metrics,
            )
            .await?
        };
    }
    let hb = runner!(heartbeats::HeartbeatProjection);
    let inv = runner!(inventory::InventoryProjection);
    let events = runner!(node_events::NodeEventsProjection);
    let tasks = runner!(tasks::TaskProjection);
    let control = runner!(control::ControlProjection);
    let alerts = runner!(alerts::AlertsProjection);
    let audit = runner!(audit::AuditProjection);
    let (a, b, c, d, e, f, g) = tokio::join!(
        hb.run(cancel.clone()),
        inv.run(cancel.clone()),
        events.run(cancel.clone()),
        tasks.run(cancel.clone()),
        control.run(cancel.clone()),
        alerts.run(cancel.clone()),
        audit.run(cancel.clone())
    );
    a.and(b).and(c).and(d).and(e).and(f).and(g)
}
