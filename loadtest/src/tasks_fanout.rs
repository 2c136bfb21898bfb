//! `nerve-loadtest tasks`: a task fanned out to N simulated nodes, end to end. The nodes exist in
//! ClickHouse (one inventory report and heartbeat each); a simulator answers every dispatch the
//! way an agent does — reply, then `TaskAccepted`, `TaskStarted`, one `TaskOutputProduced` and
//! `TaskFinished` on the node's task subject — over a few shared NATS connections; the real
//! dispatcher and projectors run in this process; the task is created through the real API
//! service. Reported: time from the request until every node accepted (simulator side), until
//! every result was published, and until the ledger in ClickHouse shows every node finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nerve_ingest::Outgoing;
use nerve_platform::metrics::Registry;
use nerve_schemas::{
    Envelope, TaskAccepted, TaskDispatched, TaskFinished, TaskOutputProduced, TaskStarted, subjects,
};
use tokio_util::sync::CancellationToken;

use crate::services::{Services, Target};
use nerve_projections::heartbeats::NODE_STATE;
use nerve_projections::tasks::TASK_NODES;

#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// Simulated nodes the task goes to.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: u32,
    /// NATS connections the simulated agents share.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub nodes: u32,
    pub accepted: u64,
    pub all_accepted_ms: u64,
    pub all_results_published_ms: u64,
    pub ledger_complete_ms: u64,
    pub succeeded: u64,
}

/// Answers dispatches for every simulated node on one connection (queue group: each dispatch
/// reaches one connection).
async fn simulated_agents(
    client: async_nats::Client,
    accepted: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(client.clone());
    let mut dispatches = client
        .queue_subscribe("nerve.v1.dispatch.*", "simulated-agents".into())
        .await?;
    let mut acks = FuturesUnordered::new();
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(msg) = dispatches.next() => msg,
            Some(r) = acks.next() => {
                r?;
                continue;
            }
        };
        let Ok(task) = nerve_schemas::decode::<TaskDispatched>(&msg.payload) else {
            continue;
        };
        let node = task.envelope.node_id.clone();
        let now = nerve_platform::now_ms;
        let subject = subjects::task_node(&node);
        let accept = Outgoing::event(
            subject.clone(),
            &TaskAccepted {
                envelope: Envelope::new::<TaskAccepted>(node.clone(), now()),
                task_id: task.task_id.clone(),
            },
        )?;
        if let Some(to) = msg.reply {
            client.publish(to, accept.payload.clone()).await?;
        }
        accepted.fetch_add(1, Ordering::Relaxed);
        let data = format!("hello from {node}\n").into_bytes();
        let output_bytes = data.len() as i64;
        let events = [
            accept,
            Outgoing::event(
                subject.clone(),
                &TaskStarted {
                    envelope: Envelope::new::<TaskStarted>(node.clone(), now()),
                    task_id: task.task_id.clone(),
                    pid: 4242,
                },
            )?,
            Outgoing::event(
                subject.clone(),
                &TaskOutputProduced {
                    envelope: Envelope::new::<TaskOutputProduced>(node.clone(), now()),
                    task_id: task.task_id.clone(),
                    stream: "stdout".into(),
                    seq: 0,
                    data,
                },
            )?,
            Outgoing::event(
                subject.clone(),
                &TaskFinished {
                    envelope: Envelope::new::<TaskFinished>(node.clone(), now()),
                    task_id: task.task_id.clone(),
                    exit_code: Some(0),
                    signal: None,
                    duration_ms: 3,
                    output_bytes,
                    truncated: false,
                    error: String::new(),
                },
            )?,
        ];
        for out in events {
            let pending = out.send(&js).await?;
            acks.push(pending.stored());
        }
        finished.fetch_add(1, Ordering::Relaxed);
        while acks.len() > 4096 {
            if let Some(r) = acks.next().await {
                r?;
            }
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    Ok(())
}

pub async fn run(args: TasksArgs) -> anyhow::Result<()> {
    let mut services = Services::start(Target::private(20_000, 100)).await?;
    let metrics = Registry::new();
    services.start_projectors(&metrics);
    crate::nodes_page::publish_fleet(&services.js, args.nodes).await?;
    let n = u64::from(args.nodes);
    while services
        .ch
        .query(&format!(
            "SELECT count() FROM (SELECT node_id FROM {NODE_STATE} FINAL)"
        ))
        .fetch_one::<u64>()
        .await?
        < n
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("tasks: {n} simulated nodes stored");

    let cancel = CancellationToken::new();
    let dispatcher = {
        let (client, metrics, cancel) = (services.client.clone(), metrics.clone(), cancel.clone());
        let signer = std::sync::Arc::new(nerve_ingest::offer::OfferSigner::generate());
        tokio::spawn(async move { nerve_dispatch::run(client, &metrics, signer, cancel).await })
    };
    let (accepted, finished) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut sims = Vec::new();
    for i in 0..args.connections.max(1) {
        let client = nerve_ingest::connect(
            &services.config.nats,
            nerve_ingest::Who::Role(&format!("simulated-agents-{i}")),
            false,
        )
        .await?;
        sims.push(tokio::spawn(simulated_agents(
            client,
            accepted.clone(),
            finished.clone(),
            cancel.clone(),
        )));
    }
    // Subscriptions are in place once the server has seen them.
    services.client.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let state = nerve_api::AppState::new(
        services.ch.clone(),
        Some(services.client.clone()),
        services.config.api.clone(),
        services.config.alerts.clone(),
        metrics.clone(),
    );
    let started = Instant::now();
    let created = nerve_api::tasks::create(
        &state,
        nerve_api::dto::tasks::CreateTask {
            kind: "command".into(),
            argv: vec!["hostname".into()],
            targets: nerve_api::dto::tasks::TaskTargets {
                status: vec![
                    nerve_api::dto::fleet::NodeStatus::Online,
                    nerve_api::dto::fleet::NodeStatus::Suspect,
                    nerve_api::dto::fleet::NodeStatus::Offline,
                ],
                ..Default::default()
            },
            ..Default::default()
        },
        "loadtest",
    )
    .await
    .map_err(|e| anyhow::anyhow!("create task: {e}"))?;
    anyhow::ensure!(
        created.expected_nodes.len() as u64 == n,
        "expected {n} nodes"
    );
    let ms = |i: Instant| i.elapsed().as_millis() as u64;
    let (mut all_accepted_ms, mut all_published_ms) = (None, None);
    let ledger_complete_ms;
    let succeeded;
    loop {
        if all_accepted_ms.is_none() && accepted.load(Ordering::Relaxed) >= n {
            all_accepted_ms = Some(ms(started));
        }
        if all_published_ms.is_none() && finished.load(Ordering::Relaxed) >= n {
            all_published_ms = Some(ms(started));
        }
        let done: u64 = services
            .ch
            .query(&format!(
                "SELECT count() FROM {TASK_NODES} FINAL WHERE task_id = ? \
                 AND state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'unreachable')"
            ))
            .bind(&created.task_id)
            .fetch_one()
            .await?;
        if done >= n {
            ledger_complete_ms = ms(started);
            succeeded = services
                .ch
                .query(&format!("SELECT count() FROM {TASK_NODES} FINAL WHERE task_id = ? AND state = 'succeeded'"))
                .bind(&created.task_id)
                .fetch_one::<u64>()
                .await?;
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "no complete ledger after 300 s ({done} of {n})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let report = Report {
        nodes: args.nodes,
        accepted: accepted.load(Ordering::Relaxed),
        all_accepted_ms: all_accepted_ms.unwrap_or(ledger_complete_ms),
        all_results_published_ms: all_published_ms.unwrap_or(ledger_complete_ms),
        ledger_complete_ms,
        succeeded,
    };
    println!(
        "loadtest tasks: one command fanned out to {} simulated nodes",
        report.nodes
    );
    println!(
        "all accepted (simulator side)      {} ms",
        report.all_accepted_ms
    );
    println!(
        "all results published              {} ms",
        report.all_results_published_ms
    );
    println!(
        "ledger complete in ClickHouse      {} ms",
        report.ledger_complete_ms
    );
    println!(
        "succeeded                          {} of {}",
        report.succeeded, report.nodes
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    cancel.cancel();
    dispatcher.await??;
    for s in sims {
        s.await??;
    }
    anyhow::ensure!(succeeded == n, "{succeeded} of {n} nodes succeeded");
    services.stop().await
}
