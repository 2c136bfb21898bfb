//! Heartbeat roll-ups: per node and minute (`heartbeats_1m`) and per node and hour
//! (`heartbeats_1h`), filled by materialized views on every insert into `heartbeats` and kept
//! far longer than the raw rows (see `retention`). SummingMergeTree over whole numbers only:
//! sums and counts, so partial rows from different inserts add up exactly in any order (a
//! rebuild compares them `FINAL` with the live ones), and an average is a sum over a count:
//! `cpu_pct_milli / samples / 1000` is the mean CPU busy %, `gpu_util_milli / gpu_samples / 1000`
//! the mean GPU utilisation, `gpu_seconds / 3600` GPU-hours, `net_rx_bytes / covered_secs` the
//! mean receive rate.

/// Table: Heartbeats per node and minute (sums and counts).
pub const HEARTBEATS_1M: &str = "heartbeats_1m";
/// Table: Heartbeats per node and hour (sums and counts).
pub const HEARTBEATS_1H: &str = "heartbeats_1h";
/// The materialized views that fill them from `heartbeats`.
pub const VIEWS: [&str; 2] = ["heartbeats_1m_mv", "heartbeats_1h_mv"];

/// Each roll-up column and how one heartbeat row contributes to it.
const COLUMNS: [(&str, &str); 15] = [
    ("samples", "1"),
    ("covered_secs", "interval_secs"),
    ("cpu_pct_milli", "toUInt64(cpu_pct * 1000)"),
    ("load1_milli", "toUInt64(load1 * 1000)"),
    ("mem_used_bytes_sum", "mem_used_bytes"),
    ("mem_total_bytes_sum", "mem_total_bytes"),
    ("disk_used_bytes_sum", "disk_used_bytes"),
    ("disk_total_bytes_sum", "disk_total_bytes"),
    (
        "net_rx_bytes",
        "toUInt64(net_rx_bytes_per_sec * interval_secs)",
    ),
    (
        "net_tx_bytes",
        "toUInt64(net_tx_bytes_per_sec * interval_secs)",
    ),
    ("gpu_samples", "length(gpu_util_pct)"),
    ("gpu_seconds", "length(gpu_index) * interval_secs"),
    (
        "gpu_util_milli",
        "arraySum(arrayMap(x -> toUInt64(x * 1000), gpu_util_pct))",
    ),
    ("gpu_mem_used_bytes_sum", "arraySum(gpu_mem_used_bytes)"),
    (
        "gpu_energy_joules",
        "toUInt64(arraySum(gpu_power_w) * interval_secs)",
    ),
];

/// The roll-up columns after `node_id` and `ts`, in order.
pub fn column_names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|(name, _)| *name)
}

/// The roll-up tables, finest first, with the function that starts their bucket and how they
/// are partitioned.
const ROLLUPS: [(&str, &str, &str); 2] = [
    (HEARTBEATS_1M, "toStartOfMinute", "toDate(ts)"),
    (HEARTBEATS_1H, "toStartOfHour", "toYYYYMM(ts)"),
];

/// The roll-up tables and their views, for database `db` (after `heartbeats`).
pub fn ddl(db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ((table, bucket, partition), view) in ROLLUPS.into_iter().zip(VIEWS) {
        let columns: Vec<String> = COLUMNS
            .iter()
            .map(|(name, _)| format!("{name} UInt64"))
            .collect();
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} (node_id String, ts DateTime('UTC'), {}) \
             ENGINE = SummingMergeTree() PARTITION BY {partition} ORDER BY (node_id, ts)",
            columns.join(", ")
        ));
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view} TO {db}.{table} AS {}",
            select(&format!("{db}.heartbeats"), bucket)
        ));
    }
    out
}

/// One roll-up's rows computed from `source` (a heartbeats table), per node and `bucket`
/// (`toStartOfMinute`, `toStartOfHour`): what its view inserts, and what tests compare it with.
pub fn select(source: &str, bucket: &str) -> String {
    let sums: Vec<String> = COLUMNS
        .iter()
        .map(|(name, each)| format!("sum({each}) AS {name}"))
        .collect();
    format!(
        "SELECT node_id, {bucket}(ts) AS ts, {} FROM {source} GROUP BY node_id, ts",
        sums.join(", ")
    )
}
