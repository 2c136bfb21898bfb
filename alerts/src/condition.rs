//! A rule's condition as one ClickHouse query: which nodes in its scope meet it now, with the
//! value (and, for absence, since when). Threshold rules read `heartbeats`, absence rules
//! `node_liveness`, event rules `node_events` (XIDs), `task_nodes` (failed runs) or
//! `remediation_log` (the remediation circuit breaker, [`breaker_builtin`]).

use std::collections::HashMap;

use nerve_projections::control::RuleRow;
use nerve_projections::heartbeats::HEARTBEATS;
use nerve_projections::node_events::{NODE_EVENTS, NODE_LIVENESS};
use nerve_projections::remediation::BREAKER;
use nerve_projections::scope::NodeFilter;
use nerve_projections::tasks::TASK_NODES;

use crate::book::Holding;
use crate::rule::{Aggregate, Kind, Metric};
use crate::rules::Rule;
use crate::{AlertsError, Context};

/// The SQL expression of a threshold metric over one `heartbeats` row, and a condition the row
/// must meet for it to mean anything (GPU metrics: the node has GPUs); `None` for metrics of
/// other kinds.
fn metric_sql(metric: Metric) -> Option<(&'static str, &'static str)> {
    Some(match metric {
        Metric::CpuPct => ("cpu_pct", ""),
        Metric::MemUsedPct => (
            "100 * mem_used_bytes / mem_total_bytes",
            "mem_total_bytes > 0",
        ),
        Metric::DiskUsedPct => (
            "100 * disk_used_bytes / disk_total_bytes",
            "disk_total_bytes > 0",
        ),
        Metric::Load1 => ("load1", ""),
        Metric::GpuTemperatureC => (
            "arrayReduce('max', gpu_temperature_c)",
            "notEmpty(gpu_temperature_c)",
        ),
        Metric::GpuUtilPct => ("arrayReduce('max', gpu_util_pct)", "notEmpty(gpu_util_pct)"),
        Metric::GpuMemUsedPct => (
            "arrayReduce('max', arrayMap((u, t) -> if(t = 0, 0, 100 * u / t), \
             gpu_mem_used_bytes, gpu_mem_total_bytes))",
            "notEmpty(gpu_mem_total_bytes)",
        ),
        Metric::GpuPowerW => ("arrayReduce('max', gpu_power_w)", "notEmpty(gpu_power_w)"),
        Metric::Suspect
        | Metric::Offline
        | Metric::GpuXidCritical
        | Metric::GpuXid
        | Metric::TaskFailurePct
        | Metric::ArchiveLagPct
        | Metric::RemediationBreaker => return None,
    })
}

/// The built-in rule's id (fixed, so its alert survives restarts).
pub const BREAKER_RULE_ID: &str = "00000000-0000-7000-8000-00000000b7ea";

/// The built-in `remediation-breaker` rule: fires while the remediation circuit breaker is
/// open, told to `channels` (`alerts.remediation_breaker_channels`).
pub fn breaker_builtin(channels: &[String]) -> RuleRow {
    RuleRow {
        rule_id: BREAKER_RULE_ID.to_owned(),
        name: "remediation-breaker".to_owned(),
        description: "Built in: the remediation circuit breaker tripped; policies act on \
                      nothing until an admin resets it."
            .to_owned(),
        kind: Kind::Event.as_str().to_owned(),
        metric: Metric::RemediationBreaker.as_str().to_owned(),
        op: crate::rule::Op::Ge.as_str().to_owned(),
        threshold: 1.0,
        window_secs: 60,
        severity: crate::rule::Severity::Critical.as_str().to_owned(),
        channels: channels.to_vec(),
        enabled: 1,
        updated_by: "nerve".to_owned(),
        ..RuleRow::default()
    }
}

/// The nodes in `rule`'s scope whose condition holds at `now_ms`.
pub async fn holding(
    ctx: &Context,
    rule: &Rule,
    now_ms: i64,
) -> Result<HashMap<String, Holding>, AlertsError> {
    let now = now_ms.max(0) as u64;
    let from_ms = now.saturating_sub(rule.window_secs.saturating_mul(1000));
    let op = rule.op.as_str();
    let filter = NodeFilter {
        node_ids: &rule.node_ids,
        clusters: &rule.clusters,
        labels: &rule.labels,
    };
    let mut clauses = filter.clauses();
    // What the SQL binds before the filter's conditions (the threshold comes after them).
    let mut binds: Vec<u64> = Vec::new();
    let sql = match (rule.kind, rule.metric) {
        (Kind::Threshold, metric) => {
            let (expr, valid) = metric_sql(metric)
                .ok_or_else(|| AlertsError::BadRequest(format!("metric {metric:?}")))?;
            let agg = match rule.aggregate.unwrap_or(Aggregate::Avg) {
                Aggregate::Avg => format!("avg({expr})"),
                Aggregate::Min => format!("min({expr})"),
                Aggregate::Max => format!("max({expr})"),
                Aggregate::Last => format!("argMax({expr}, ts_ms)"),
            };
            clauses.insert(0, "ts >= toDateTime(?) AND ts_ms >= ?".to_owned());
            binds.extend([from_ms / 1000, from_ms]);
            if !valid.is_empty() {
                clauses.push(valid.to_owned());
            }
            format!(
                "SELECT node_id, toFloat64({agg}) AS value, toInt64(0) AS since \
                 FROM {HEARTBEATS} WHERE {} GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
        (Kind::Absence, metric) => {
            let states = match metric {
                Metric::Offline => "('offline')",
                _ => "('suspect', 'offline')",
            };
            clauses.insert(0, format!("state IN {states}"));
            binds.push(now);
            format!(
                "SELECT node_id, (toFloat64(?) - changed_at_ms) / 1000 AS value, \
                 toInt64(changed_at_ms) AS since \
                 FROM {NODE_LIVENESS} FINAL WHERE {}",
                clauses.join(" AND ")
            )
        }
        (Kind::Event, Metric::TaskFailurePct) => {
            clauses.insert(
                0,
                "state IN ('succeeded', 'failed', 'timed_out') AND updated_at_ms >= ?".to_owned(),
            );
            binds.push(from_ms);
            format!(
                "SELECT node_id, 100 * countIf(state != 'succeeded') / count() AS value, \
                 toInt64(0) AS since FROM {TASK_NODES} FINAL WHERE {} \
                 GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
        (Kind::Event, Metric::RemediationBreaker) => {
            clauses.insert(0, "value > 0".to_owned());
            format!(
                "SELECT node_id, value, since FROM (SELECT 'breaker' AS node_id, \
                 toFloat64(open) AS value, toInt64(since_ms) AS since FROM {BREAKER}) \
                 WHERE {} AND value {op} ?",
                clauses.join(" AND ")
            )
        }
        (Kind::Archive, _) => {
            return Err(AlertsError::BadRequest(
                "archive rules are judged from the archive (crate::archive)".into(),
            ));
        }
        (Kind::Event, metric) => {
            let critical = if metric == Metric::GpuXidCritical {
                " AND severity = 'critical'"
            } else {
                ""
            };
            clauses.insert(
                0,
                format!("kind = 'GpuXidOccurred'{critical} AND ts >= toDateTime(?) AND ts_ms >= ?"),
            );
            binds.extend([from_ms / 1000, from_ms]);
            format!(
                "SELECT node_id, toFloat64(count()) AS value, toInt64(0) AS since \
                 FROM {NODE_EVENTS} WHERE {} GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
    };
    let mut q = ctx.ch().query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    q = filter.bind(q);
    if rule.kind != Kind::Absence {
        q = q.bind(rule.threshold);
    }
    let rows: Vec<(String, f64, i64)> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|(node, value, since)| {
            let since_ms = (rule.kind == Kind::Absence).then_some(since);
            (node, Holding { value, since_ms })
        })
        .collect())
}
