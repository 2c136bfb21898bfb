//! `nerve-loadtest alerts`: N simulated nodes (as `nodes-page`, plus a window of heartbeats per
//! node), then (1) the latency of one rule's evaluation query for typical rules — the work the
//! evaluator does per rule and round — and (2) a mass firing: a rule that holds for every node,
//! timed from the rule being stored until every alert is in ClickHouse.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nerve_alerts::rule::{Aggregate, Kind, Metric, Op, Severity};
use nerve_alerts::rules::Rule;
use nerve_ingest::Outgoing;
use nerve_platform::metrics::Registry;

use crate::services::{Services, Target};
use nerve_projections::alerts::ALERTS;
use nerve_projections::heartbeats::HEARTBEATS;
use nerve_projections::node_events::NODE_LIVENESS;

#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u32,
    /// Heartbeats per node, 30 s apart, ending now (a 5-minute window holds 10).
    #[arg(long, default_value_t = 10)]
    pub heartbeats_per_node: u32,
    /// Evaluations timed per rule.
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Latency of one rule's evaluation.
#[derive(Debug, serde::Serialize)]
pub struct RuleTiming {
    pub rule: String,
    pub matching_nodes: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The report.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub nodes: u32,
    pub heartbeats: u64,
    pub rules: Vec<RuleTiming>,
    /// Alerts in the mass firing, and the seconds from the rule stored to all of them projected.
    pub mass_firing_alerts: u64,
    pub mass_firing_secs: f64,
}

fn rule(
    name: &str,
    kind: Kind,
    metric: Metric,
    aggregate: Option<Aggregate>,
    op: Op,
    threshold: f64,
) -> Rule {
    Rule {
        rule_id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        kind,
        metric,
        aggregate,
        op,
        threshold,
        window_secs: 300,
        for_secs: 0,
        resolve_after_secs: 0,
        severity: Severity::Warning,
        clusters: Vec::new(),
        labels: Vec::new(),
        node_ids: Vec::new(),
        channels: Vec::new(),
        enabled: true,
    }
}

pub async fn run(args: AlertsArgs) -> anyhow::Result<()> {
    let mut services = Services::start(Target::private(20_000, 200)).await?;
    let metrics = Registry::new();
    services.start_projectors(&metrics);
    let started = Instant::now();
    crate::nodes_page::publish_fleet(&services.js, args.nodes).await?;
    publish_history(&services.js, args.nodes, args.heartbeats_per_node).await?;
    let n = u64::from(args.nodes);
    let heartbeats = n * u64::from(args.heartbeats_per_node.max(1));
    let count = |sql: &str| {
        let query = services.ch.query(sql);
        async move { query.fetch_one::<u64>().await }
    };
    while count(&format!("SELECT count() FROM {HEARTBEATS}")).await? < heartbeats
        || count(&format!("SELECT count() FROM {NODE_LIVENESS}")).await? < n.div_ceil(6)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "alerts: {n} nodes, {heartbeats} heartbeats projected in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ctx = nerve_alerts::Context::new(
        services.ch.clone(),
        Some(services.client.clone()),
        &services.config.alerts,
    );

    let mut scoped = rule(
        "cpu > 95, 100 nodes",
        Kind::Threshold,
        Metric::CpuPct,
        Some(Aggregate::Avg),
        Op::Gt,
        95.0,
    );
    scoped.node_ids = (0..100).map(|i| format!("sim-{i:06}")).collect();
    let rules = [
        rule(
            "cpu avg 5m > 95 (none)",
            Kind::Threshold,
            Metric::CpuPct,
            Some(Aggregate::Avg),
            Op::Gt,
            95.0,
        ),
        rule(
            "GPU temp min 5m > 60 (all)",
            Kind::Threshold,
            Metric::GpuTemperatureC,
            Some(Aggregate::Min),
            Op::Gt,
            60.0,
        ),
        rule(
            "GPU memory max 5m > 70 %",
            Kind::Threshold,
            Metric::GpuMemUsedPct,
            Some(Aggregate::Max),
            Op::Gt,
            70.0,
        ),
        rule(
            "node offline (1 in 6)",
            Kind::Absence,
            Metric::Offline,
            None,
            Op::Gt,
            0.0,
        ),
        rule(
            "critical XIDs in 5m",
            Kind::Event,
            Metric::GpuXidCritical,
            None,
            Op::Ge,
            1.0,
        ),
        scoped,
    ];
    let mut timings = Vec::new();
    for r in &rules {
        let now = nerve_platform::now_ms();
        let matching = nerve_alerts::condition::holding(&ctx, r, now).await?.len();
        let mut ms = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let t = Instant::now();
            nerve_alerts::condition::holding(&ctx, r, nerve_platform::now_ms()).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
        timings.push(RuleTiming {
            rule: r.name.clone(),
            matching_nodes: matching,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        });
    }

    // Mass firing: the evaluator (1 s rounds) against a rule every node meets.
    let cancel = tokio_util::sync::CancellationToken::new();
    let evaluator = {
        let mut config = services.config.alerts.clone();
        config.eval_interval_ms = 1000;
        let (ctx, metrics, cancel) = (ctx.clone(), metrics.clone(), cancel.clone());
        tokio::spawn(async move { nerve_alerts::run(ctx, config, None, &metrics, cancel).await })
    };
    let stored = Instant::now();
    let save = nerve_alerts::contract::SaveRule {
        name: "everyone".into(),
        kind: "threshold".into(),
        metric: "cpu_pct".into(),
        op: Some(">=".into()),
        threshold: Some(0.0),
        window_secs: Some(3600),
        ..Default::default()
    };
    nerve_alerts::rules::save(&ctx, None, save, "loadtest")
        .await
        .map_err(|e| anyhow::anyhow!("saving the rule: {e}"))?;
    let firing = |ch: clickhouse::Client| async move {
        ch.query(&format!(
            "SELECT count() FROM {ALERTS} FINAL WHERE state = 'firing'"
        ))
        .fetch_one::<u64>()
        .await
    };
    while firing(services.ch.clone()).await? < n {
        anyhow::ensure!(
            stored.elapsed() < Duration::from_secs(600),
            "the mass firing did not complete in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mass_secs = stored.elapsed().as_secs_f64();
    cancel.cancel();
    evaluator.await??;

    let report = Report {
        nodes: args.nodes,
        heartbeats,
        rules: timings,
        mass_firing_alerts: n,
        mass_firing_secs: mass_secs,
    };
    println!(
        "{n} nodes, {heartbeats} heartbeats; {} evaluations per rule",
        args.requests
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "rule", "matching", "p50 ms", "p99 ms", "max ms"
    );
    for t in &report.rules {
        println!(
            "{:<30} {:>9} {:>9.1} {:>9.1} {:>9.1}",
            t.rule, t.matching_nodes, t.p50_ms, t.p99_ms, t.max_ms
        );
    }
    println!(
        "mass firing: {} alerts stored {:.1} s after the rule",
        report.mass_firing_alerts, report.mass_firing_secs
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await
}

/// `per_node - 1` older heartbeats for every node, 30 s apart before the one `publish_fleet`
/// sent (stale nodes' included: they stay stale).
async fn publish_history(
    js: &async_nats::jetstream::Context,
    nodes: u32,
    per_node: u32,
) -> anyhow::Result<()> {
    let now = nerve_platform::now_ms();
    let mut inflight = FuturesUnordered::new();
    for k in 1..per_node {
        for i in 0..nodes {
            let id = format!("sim-{i:06}");
            let age = if i % 6 == 0 { 600_000 } else { 0 };
            let hb = crate::sim::heartbeat(&id, i64::from(k), now - age - i64::from(k) * 30_000);
            let out = Outgoing::event(nerve_schemas::subjects::heartbeat(&id), &hb)?;
            let pending = out.send(js).await?;
            inflight.push(pending.stored());
            while inflight.len() >= 4096 {
                if let Some(r) = inflight.next().await {
                    r?;
                }
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(())
}
