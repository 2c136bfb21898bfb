//! A table's partitions as a rebuild sees them: which kind of table it is, each partition's
//! checksum (row count and the sum of a hash of every column: order-independent, so two tables
//! holding the same rows agree however they were written), and moving a partition from one
//! database's copy of a table into another's atomically.

use std::collections::BTreeMap;

use clickhouse::{Client, Row};
use serde::Deserialize;

/// Rows and hash of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    pub rows: u64,
    pub hash: u64,
}

/// How a table is partitioned and merged.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `Some(monthly)` for a table partitioned by time (by month or by day).
    pub by_time: Option<bool>,
    /// A ReplacingMergeTree or SummingMergeTree (a roll-up): compared `FINAL`, as readers see
    /// it (rows replaced or summed however the writes were batched and merged).
    pub merging: bool,
}

/// The shape of `db.table`.
pub async fn shape(ch: &Client, db: &str, table: &str) -> Result<Shape, clickhouse::error::Error> {
    let (engine, key): (String, String) = ch
        .query("SELECT engine, partition_key FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind(table)
        .fetch_one()
        .await?;
    Ok(Shape {
        by_time: (!key.is_empty() && key != "tuple()").then(|| key.contains("YYYYMM")),
        merging: engine.starts_with("Replacing") || engine.starts_with("Summing"),
    })
}

/// A hash of every column of a row of `db.table` (SQL).
pub async fn row_hash(
    ch: &Client,
    db: &str,
    table: &str,
) -> Result<String, clickhouse::error::Error> {
    let columns: Vec<(String, String)> = ch
        .query(
            "SELECT name, type FROM system.columns WHERE database = ? AND table = ? ORDER BY name",
        )
        .bind(db)
        .bind(table)
        .fetch_all()
        .await?;
    let columns: Vec<String> = columns
        .into_iter()
        .map(|(name, ty)| match ty.as_str() {
            "UUID" => format!("toString({name})"),
            // A nullable hash would make the sum nullable.
            t if t.starts_with("Nullable(") => format!("isNull({name}), assumeNotNull({name})"),
            _ => name,
        })
        .collect();
    Ok(format!("cityHash64({})", columns.join(", ")))
}

#[derive(Debug, Row, Deserialize)]
struct PartitionSum {
    partition_id: String,
    rows: u64,
    hash: u64,
}

/// Every partition's checksum of `db.table` by partition id, with `hash` from [`row_hash`];
/// `projector`: only that projector's rows (a table several write); `from`: only partitions
/// from this id on.
pub async fn sums(
    ch: &Client,
    db: &str,
    table: &str,
    shape: Shape,
    hash: &str,
    projector: Option<&str>,
    from: Option<&str>,
) -> Result<BTreeMap<String, Sum>, clickhouse::error::Error> {
    let final_ = if shape.merging { "FINAL" } else { "" };
    let filter = projector.map_or("", |_| "WHERE projector = ?");
    let sql = format!(
        "SELECT _partition_id AS partition_id, count() AS rows, sum({hash}) AS hash \
         FROM {db}.{table} {final_} {filter} GROUP BY partition_id"
    );
    let mut q = ch.query(&sql);
    if let Some(p) = projector {
        q = q.bind(p);
    }
    let rows: Vec<PartitionSum> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .filter(|r| from.is_none_or(|f| r.partition_id.as_str() >= f))
        .map(|r| {
            let sum = Sum {
                rows: r.rows,
                hash: r.hash,
            };
            (r.partition_id, sum)
        })
        .collect())
}

/// Makes partition `id` of `live.table` what it is in `source.table`: replaced atomically,
/// or dropped when `source` has no such partition. False for an id that is not one ClickHouse
/// makes (nothing is run).
pub async fn take(
    ch: &Client,
    live: &str,
    source: &str,
    table: &str,
    id: &str,
    source_has_it: bool,
) -> Result<bool, clickhouse::error::Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(false);
    }
    let sql = if source_has_it {
        format!("ALTER TABLE {live}.{table} REPLACE PARTITION ID '{id}' FROM {source}.{table}")
    } else {
        format!("ALTER TABLE {live}.{table} DROP PARTITION ID '{id}'")
    };
    ch.query(&sql).execute().await?;
    Ok(true)
}

/// Drops partition `id` of `db.local` (a cluster's local table) on every shard of `cluster`.
/// False for an id that is not one ClickHouse makes (nothing is run).
pub async fn drop_on_cluster(
    ch: &Client,
    db: &str,
    local: &str,
    cluster: &str,
    id: &str,
) -> Result<bool, clickhouse::error::Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(false);
    }
    ch.query(&format!(
        "ALTER TABLE {db}.{local} ON CLUSTER {cluster} DROP PARTITION ID '{id}'"
    ))
    .execute()
    .await?;
    Ok(true)
}

/// The first partition id in scope for a start in the month beginning at `month_start`
/// (`YYYYMM` for monthly partitions, `YYYYMM01` for daily).
pub fn floor(month_start: time::OffsetDateTime, monthly: bool) -> String {
    let month = format!(
        "{:04}{:02}",
        month_start.year(),
        u8::from(month_start.month())
    );
    if monthly { month } else { format!("{month}01") }
}
