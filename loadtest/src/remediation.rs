//! `nerve-loadtest remediation`: N simulated nodes (as `nodes-page`: ten clusters) heartbeating
//! at a steady rate, the projectors and the remediation engine in this process, a policy that
//! cordons on XID 79. (1) XIDs on `--xids` distinct nodes at `--xid-rate` a second, the breaker
//! set out of the way: the time from each XID (its `occurred_at`) to the node's
//! `NodeMaintenanceChanged` to `cordoned` (the engine's). (2) A mass event: XIDs on `--mass`
//! other nodes at once under the default breaker (10 nodes in all, 5 % of a cluster, per 10
//! min): how many runs started, how many were held, how many times it tripped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use nerve_platform::config::RemediationConfig;
use nerve_platform::metrics::Registry;
use nerve_projections::remediation::{REMEDIATION_LOG, REMEDIATION_POLICIES};
use nerve_schemas::{Envelope, GpuXidOccurred, RemediationPolicySaved, RemediationStep, subjects};
use tokio_util::sync::CancellationToken;

use crate::services::{Services, Target};

#[derive(Debug, Clone, Args)]
pub struct RemediationArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 6_000)]
    pub nodes: u32,
    /// Heartbeats per second across the fleet while measuring (6,000 nodes every 10 s: 600).
    #[arg(long, default_value_t = 600)]
    pub heartbeat_rate: u32,
    /// Nodes that get an XID in the latency phase.
    #[arg(long, default_value_t = 200)]
    pub xids: u32,
    /// XIDs a second in the latency phase.
    #[arg(long, default_value_t = 20)]
    pub xid_rate: u32,
    /// Nodes that get an XID at once in the mass event.
    #[arg(long, default_value_t = 500)]
    pub mass: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// The report.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub nodes: u32,
    pub heartbeat_rate: u32,
    pub xids: u32,
    pub detect_to_cordon_p50_ms: f64,
    pub detect_to_cordon_p99_ms: f64,
    pub detect_to_cordon_max_ms: f64,
    pub mass_xids: u32,
    /// How many the breaker must let start (the same starts through the same breaker).
    pub mass_limit: u64,
    pub mass_started: u64,
    pub mass_held: u64,
    pub mass_trips: u64,
    pub mass_settled_secs: f64,
}

fn xid(node: &str) -> GpuXidOccurred {
    GpuXidOccurred {
        gpu_index: 3,
        gpu_uuid: format!("GPU-{node}-3"),
        ..GpuXidOccurred::example(node, nerve_platform::now_ms())
    }
}

/// The policy: cordon on XID 79 (the run ends there, back in service).
fn policy() -> RemediationPolicySaved {
    let id = "00000000-0000-7000-8000-00000000c0de";
    RemediationPolicySaved {
        envelope: Envelope::new::<RemediationPolicySaved>(id, nerve_platform::now_ms()),
        policy_id: id.into(),
        name: "loadtest-cordon".into(),
        description: "cordon on XID 79".into(),
        enabled: true,
        dry_run: false,
        trigger: "xid".into(),
        xid_codes: vec![79],
        severity: "critical".into(),
        rule_ids: Vec::new(),
        checks: Vec::new(),
        clusters: Vec::new(),
        labels: Vec::new(),
        node_ids: Vec::new(),
        steps: vec![RemediationStep {
            stage: "prepare".into(),
            action: "cordon".into(),
            ..RemediationStep::default()
        }],
        requested_by: "loadtest".into(),
    }
}

fn engine(
    services: &Services,
    config: RemediationConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let ch = services.ch.clone();
    let client = services.client.clone();
    let ctx = nerve_alerts::Context::new(ch.clone(), Some(client.clone()), &services.config.alerts);
    tokio::spawn(async move {
        if let Err(e) =
            nerve_remediation::run(ch, client, ctx, config, &Registry::new(), cancel).await
        {
            eprintln!("remediation: the engine stopped: {e}");
        }
    })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub async fn run(args: RemediationArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.xids + args.mass <= args.nodes,
        "--xids + --mass must not exceed --nodes"
    );
    let mut services = Services::start(Target::private(20_000, 100)).await?;
    services.start_projectors(&Registry::new());
    crate::nodes_page::publish_fleet(&services.js, args.nodes).await?;
    let count = |sql: String| {
        let q = services.ch.query(&sql);
        async move { q.fetch_one::<u64>().await }
    };
    while count("SELECT count() FROM (SELECT node_id FROM node_state FINAL)".into()).await?
        < u64::from(args.nodes)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let p = policy();
    nerve_ingest::Outgoing::event(subjects::control_policy(&p.policy_id), &p)?
        .publish(&services.js)
        .await?;
    while count(format!("SELECT count() FROM {REMEDIATION_POLICIES}")).await? == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = CancellationToken::new();
    let feeder = tokio::spawn(crate::live_lag::feed(
        services.js.clone(),
        "sim-",
        args.nodes,
        args.heartbeat_rate,
        stop.clone(),
    ));

    // (1) Latency, the breaker out of the way.
    let cancel = CancellationToken::new();
    let first = engine(
        &services,
        RemediationConfig {
            install_defaults: false,
            breaker_max_nodes: usize::MAX,
            breaker_max_pct: 100.0,
            ..RemediationConfig::default()
        },
        cancel.clone(),
    );
    let mut sent: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.xid_rate.max(1)),
    ));
    for i in 0..args.xids {
        tick.tick().await;
        let node = format!("sim-{i:06}");
        let event = xid(&node);
        sent.insert(node.clone(), event.envelope.occurred_at_ms);
        nerve_ingest::Outgoing::event(subjects::gpu_xid(&node), &event)?
            .publish(&services.js)
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let cordoned: Vec<(String, u64)> = loop {
        let rows: Vec<(String, u64)> = services
            .ch
            .query(
                "SELECT node_id, min(ts_ms) FROM maintenance_log \
                 WHERE state = 'cordoned' GROUP BY node_id",
            )
            .fetch_all()
            .await?;
        if rows.len() >= args.xids as usize || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    anyhow::ensure!(
        cordoned.len() == args.xids as usize,
        "{} of {} nodes cordoned",
        cordoned.len(),
        args.xids
    );
    let mut waits: Vec<f64> = cordoned
        .iter()
        .filter_map(|(node, at)| sent.get(node).map(|s| *at as f64 - *s as f64))
        .collect();
    waits.sort_by(f64::total_cmp);
    cancel.cancel();
    first.await?;

    // (2) The mass event under the default breaker.
    let cancel = CancellationToken::new();
    let config = RemediationConfig {
        install_defaults: false,
        ..RemediationConfig::default()
    };
    // What the breaker must let through: the same starts, in the same order, through the same
    // breaker (node i is in cluster i % POOLS; the fleet-wide limit binds first when the event
    // spreads over the clusters).
    let pools = crate::nodes_page::POOLS;
    let limit = {
        let mut b = nerve_remediation::breaker::Breaker::new(
            Duration::from_secs(config.breaker_window_secs),
            config.breaker_max_nodes,
            config.breaker_max_pct,
        );
        let now = Instant::now();
        (args.xids..args.xids + args.mass)
            .take_while(|i| {
                let size = (0..args.nodes).filter(|n| n % pools == i % pools).count();
                b.admit(now, &format!("pool-{}", i % pools), size)
                    == nerve_remediation::breaker::Decision::Admitted
            })
            .count() as u64
    };
    let second = engine(&services, config, cancel.clone());
    let from = args.xids;
    let nodes: Vec<String> = (from..from + args.mass)
        .map(|i| format!("sim-{i:06}"))
        .collect();
    let started = Instant::now();
    let mut acks = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let out = nerve_ingest::Outgoing::event(subjects::gpu_xid(node), &xid(node))?;
        acks.push(out.send(&services.js).await?);
    }
    for ack in acks {
        ack.stored().await?;
    }
    let first_mass = format!("sim-{from:06}");
    let last_mass = format!("sim-{:06}", from + args.mass - 1);
    let range = format!("node_id >= '{first_mass}' AND node_id <= '{last_mass}'");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let decided = count(format!(
            "SELECT uniqExact(node_id) FROM {REMEDIATION_LOG} \
             WHERE kind IN ('run_started', 'held') AND {range}"
        ))
        .await?;
        if decided >= u64::from(args.mass) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = started.elapsed().as_secs_f64();
    let kind = |k: &str| {
        count(format!(
            "SELECT count() FROM {REMEDIATION_LOG} FINAL WHERE kind = '{k}' AND {range}"
        ))
    };
    let (mass_started, mass_held, mass_trips) = (
        kind("run_started").await?,
        kind("held").await?,
        kind("breaker_tripped").await?,
    );
    cancel.cancel();
    second.await?;
    stop.cancel();
    let heartbeats = feeder.await??;
    services.stop().await?;

    let report = Report {
        nodes: args.nodes,
        heartbeat_rate: args.heartbeat_rate,
        xids: args.xids,
        detect_to_cordon_p50_ms: pct(&waits, 0.50),
        detect_to_cordon_p99_ms: pct(&waits, 0.99),
        detect_to_cordon_max_ms: waits.last().copied().unwrap_or_default(),
        mass_xids: args.mass,
        mass_limit: limit,
        mass_started,
        mass_held,
        mass_trips,
        mass_settled_secs: settled,
    };
    println!(
        "remediation: {} nodes ({heartbeats} heartbeats meanwhile); XID → cordoned over {} XIDs at \
         {}/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; mass event of {}: {} runs started \
         (limit {}), {} held, {} trip(s), all decided in {:.1} s",
        report.nodes,
        report.xids,
        args.xid_rate,
        report.detect_to_cordon_p50_ms,
        report.detect_to_cordon_p99_ms,
        report.detect_to_cordon_max_ms,
        report.mass_xids,
        report.mass_started,
        report.mass_limit,
        report.mass_held,
        report.mass_trips,
        report.mass_settled_secs,
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    anyhow::ensure!(
        report.mass_started == limit && report.mass_held == u64::from(args.mass) - limit,
        "the breaker let {} of {} start (limit {limit})",
        report.mass_started,
        args.mass
    );
    Ok(())
}
