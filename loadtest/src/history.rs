//! A simulated fleet's history, generated inside ClickHouse (`INSERT … SELECT … FROM numbers()`,
//! no events: only the tables' volume matters to what it measures): heartbeats of 8-GPU nodes
//! `sim-000000`… every `interval_secs` over the hours before `end_ms` (their roll-ups follow
//! through the views), 30 days of hourly roll-ups before those, an inventory report a day per
//! node over 30 days, and the liveness judgements of a flapping tenth of the fleet, a day each.
//! ClickHouse 18.16's lambdas cannot reach other columns, so per-GPU arrays are spelled out.

use clickhouse::Client;

/// Days of inventory reports, liveness judgements and hourly roll-ups.
pub const DAYS: u64 = 30;
const GPUS: usize = 8;

/// `sim-000042` for node 42, as [`crate::nodes_page`] names them.
const NODE_ID: &str = "concat('sim-', substring(toString(1000000 + node), 2))";

/// An 8-element array literal of `each(i)`.
fn per_gpu(each: impl Fn(usize) -> String) -> String {
    let items: Vec<String> = (0..GPUS).map(each).collect();
    format!("[{}]", items.join(", "))
}

/// Writes `hours` of heartbeats every `interval_secs`, and [`DAYS`] of inventory reports,
/// liveness changes and hourly roll-ups before `end_ms`, for `nodes` nodes; the rows written.
pub async fn fill(
    ch: &Client,
    nodes: u32,
    end_ms: u64,
    hours: u64,
    interval_secs: u64,
) -> anyhow::Result<u64> {
    let n = u64::from(nodes);
    let beats = hours * 3600 / interval_secs;
    let start_ms = end_ms - hours * 3_600_000;
    let step_ms = interval_secs * 1000;
    let util = per_gpu(|i| format!("toFloat32((node + k + {i}) % 100)"));
    let uuid = per_gpu(|i| format!("concat('GPU-', toString(node), '-{i}')"));
    let heartbeats = format!(
        "INSERT INTO heartbeats (node_id, ts, ts_ms, seq, interval_secs, uptime_secs, cpu_pct, \
             cpu_count, load1, load5, load15, mem_total_bytes, mem_used_bytes, disk_total_bytes, \
             disk_used_bytes, net_rx_bytes_per_sec, net_tx_bytes_per_sec, gpu_index, gpu_uuid, \
             gpu_util_pct, gpu_mem_used_bytes, gpu_mem_total_bytes, gpu_temperature_c, \
             gpu_power_w, stream_seq, ingested_at, gpu_health) \
         SELECT {NODE_ID}, toDateTime(intDiv(ms, 1000)), ms, k, {interval_secs}, 86400 + k, \
             toFloat32((node * 37 + k) % 100), 128, 12.5, 11.0, 10.0, 2199023255552, \
             1099511627776, 7680000000000, 2000000000000, 1.2e8, 9.0e7, \
             {idx}, {uuid}, {util}, {mem_used}, {mem_total}, {temp}, {power}, \
             1000000000 + number, toDateTime(intDiv(ms, 1000)), {health} \
         FROM (SELECT number, number % {n} AS node, intDiv(number, {n}) AS k, \
                      {start_ms} + k * {step_ms} + (node * 7919) % {step_ms} AS ms \
               FROM numbers({rows}))",
        idx = per_gpu(|i| format!("toUInt16({i})")),
        mem_used = per_gpu(|_| "toUInt64(60000000000)".into()),
        mem_total = per_gpu(|_| "toUInt64(85899345920)".into()),
        temp = per_gpu(|i| format!("toFloat32({})", 55 + i)),
        power = per_gpu(|_| "toFloat32(550)".into()),
        health = per_gpu(|_| "'ok'".into()),
        rows = n * beats,
    );
    let day_ms = 86_400_000;
    let inventory = format!(
        "INSERT INTO inventory_log (node_id, reported_at, reported_at_ms, hostname, os_name, \
             os_version, kernel_version, arch, agent_version, cpu_model, cpu_logical_cores, \
             memory_total_bytes, gpu_count, disks_json, interfaces_json, gpus_json, \
             collector_errors_json, stream_seq, detail_json) \
         SELECT {NODE_ID}, toDateTime(intDiv(ms, 1000)), ms, \
             concat('gpu-host-', toString(node)), 'Ubuntu', '22.04', '6.5.0', 'x86_64', '0.1.0', \
             'Simulated CPU', 128, 2199023255552, 8, '[]', '[]', '[]', '[]', number, '{{}}' \
         FROM (SELECT number, number % {n} AS node, intDiv(number, {n}) AS d, \
                      {end_ms} - (d + 1) * {day_ms} + (node * 7919) % {day_ms} AS ms \
               FROM numbers({rows}))",
        rows = n * DAYS,
    );
    // A tenth of the fleet went suspect, offline and came back once a day.
    let flappers = n.div_ceil(10);
    let liveness = format!(
        "INSERT INTO node_events (node_id, ts, ts_ms, kind, severity, summary, liveness, \
             previous_liveness, last_heartbeat_at_ms, silent_for_ms, stream_seq) \
         SELECT {NODE_ID}, toDateTime(intDiv(ms, 1000)), ms, \
             ['NodeBecameSuspect', 'NodeWentOffline', 'NodeCameBack'][s + 1], 'warning', '', \
             ['suspect', 'offline', 'online'][s + 1], ['online', 'suspect', 'offline'][s + 1], \
             ms - 90000, 90000, 2000000000 + number \
         FROM (SELECT number, intDiv(number, 3) % {flappers} * 10 AS node, number % 3 AS s, \
                      intDiv(number, 3 * {flappers}) AS d, \
                      {end_ms} - (d + 1) * {day_ms} + s * 600000 AS ms \
               FROM numbers({rows}))",
        rows = flappers * 3 * DAYS,
    );
    // The hours of the 30 days before the heartbeats, as the hourly view would have summed
    // 8-GPU beats every 10 s.
    let hours_before = DAYS * 24;
    let rollups = format!(
        "INSERT INTO heartbeats_1h (node_id, ts, samples, covered_secs, cpu_pct_milli, \
             load1_milli, mem_used_bytes_sum, mem_total_bytes_sum, disk_used_bytes_sum, \
             disk_total_bytes_sum, net_rx_bytes, net_tx_bytes, gpu_samples, gpu_seconds, \
             gpu_util_milli, gpu_mem_used_bytes_sum, gpu_energy_joules) \
         SELECT {NODE_ID}, toDateTime(intDiv(ms, 1000)), 360, 3600, 360 * ((node + h) % 100) * 1000, \
             360 * 12500, 360 * 1099511627776, 360 * 2199023255552, 360 * 2000000000000, \
             360 * 7680000000000, 432000000000, 324000000000, 2880, 28800, \
             2880 * ((node + h) % 100) * 1000, 2880 * 60000000000, 28800 * 550 \
         FROM (SELECT number % {n} AS node, intDiv(number, {n}) AS h, \
                      {start_ms} - (h + 1) * 3600000 AS ms \
               FROM numbers({rows}))",
        start_ms = start_ms / 3_600_000 * 3_600_000,
        rows = n * hours_before,
    );
    for sql in [&heartbeats, &inventory, &liveness, &rollups] {
        ch.query(sql).execute().await?;
    }
    Ok(n * beats + n * DAYS + flappers * 3 * DAYS + n * hours_before)
}
