//! The task dispatcher, run inside `nerve project`. It reads `TaskRequested` and
//! `TaskCancelRequested` from the tasks stream with one durable consumer and offers each task to
//! every expected node with a core NATS request on the node's dispatch subject — no JetStream
//! consumer per node, so it scales with the number of tasks, not of nodes.
//!
//! Per node: a `TaskDispatched` event records the first offer; a node that does not answer
//! (not connected: no responders; or silent) is offered again every [`RETRY_EVERY`] until the
//! task's accept deadline, so a node that comes back in time still runs it; one that never
//! accepts gets `TaskUnreachable`. The agent's `TaskAccepted` and everything after come from the
//! agent itself. The request is acked when its dispatch is over (progress is signalled while it
//! runs), so a dispatcher that dies mid-way is replaced by one that offers again — agents answer a
//! repeated offer without running the task twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use nerve_platform::metrics::{Counter, Histogram, Registry};
use nerve_schemas::{
    Envelope, Event, TaskCancelled, TaskDispatched, TaskEvent, TaskRequested, TaskUnreachable,
    subjects,
};
use tokio_util::sync::CancellationToken;

/// Durable consumer name.
pub const NAME: &str = "dispatcher";
/// How long one offer waits for the agent's answer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often unanswered nodes are offered the task again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Offers in flight at once, per task.
pub const MAX_INFLIGHT: usize = 2_000;

/// Why the dispatcher could not run.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("dispatcher: {0}")]
    Setup(String),
}

#[derive(Clone)]
struct Metrics {
    offers: Counter,
    accepted: Counter,
    unreachable: Counter,
    publish_errors: Counter,
    /// From a task's batch start to a node's acceptance (retries included).
    dispatch_time: Histogram,
}

impl Metrics {
    fn new(r: &Registry) -> Self {
        Self {
            offers: r.counter(
                "nerve_dispatch_offers_total",
                "Task offers sent to nodes (retries included).",
                &[],
            ),
            accepted: r.counter(
                "nerve_dispatch_accepted_total",
                "Offers a node accepted.",
                &[],
            ),
            unreachable: r.counter(
                "nerve_dispatch_unreachable_total",
                "Nodes that did not accept a task before its deadline.",
                &[],
            ),
            publish_errors: r.counter(
                "nerve_dispatch_publish_errors_total",
                "Ledger events the dispatcher could not publish.",
                &[],
            ),
            dispatch_time: r.histogram(
                "nerve_dispatch_seconds",
                "From the start of a task's batch to a node accepting its offer (retries included).",
                &[],
            ),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    client: async_nats::Client,
    js: jetstream::Context,
    metrics: Metrics,
    /// Running dispatches by task id, to stop on cancel.
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Rollouts waiting for a batch to end: task id → the batch's nodes not done yet.
    batches: Arc<Mutex<HashMap<String, Batch>>>,
    /// Signs every offer (agents refuse unsigned ones).
    signer: Arc<nerve_ingest::offer::OfferSigner>,
}

/// A rollout batch still running.
struct Batch {
    open: std::collections::HashSet<String>,
    done: Arc<tokio::sync::Notify>,
}

/// Follows every node's task events (core subscription; JetStream publishes reach it too) and
/// closes the batches whose nodes all reached a final state.
async fn watch_batches(ctx: Ctx, cancel: CancellationToken) {
    let mut events = match ctx.client.subscribe(subjects::TASK_NODES_ALL).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow task results; batches wait for their deadline");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return,
            msg = events.next() => match msg {
                Some(m) => m,
                None => return,
            },
        };
        let Some(end) = nerve_schemas::task_end(&msg.payload) else {
            continue;
        };
        let mut batches = ctx.batches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = batches.get_mut(&end.task_id)
            && b.open.remove(&end.node_id)
            && b.open.is_empty()
        {
            b.done.notify_one();
        }
    }
}

impl Ctx {
    async fn publish<E: Event>(&self, subject: String, event: &E) {
        if let Err(e) = nerve_ingest::publish(&self.js, subject, event).await {
            self.metrics.publish_errors.inc();
            tracing::warn!(error = %e, "ledger event not published");
        }
    }
}

/// Runs the dispatcher until `cancel`.
pub async fn run(
    client: async_nats::Client,
    metrics: &Registry,
    signer: Arc<nerve_ingest::offer::OfferSigner>,
    cancel: CancellationToken,
) -> Result<(), DispatchError> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(nerve_ingest::TASKS_STREAM)
        .await
        .map_err(|e| DispatchError::Setup(e.to_string()))?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(NAME.into()),
            description: Some("task dispatcher".into()),
            filter_subject: subjects::TASK_REQUESTS_ALL.into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .map_err(|e| DispatchError::Setup(e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| DispatchError::Setup(e.to_string()))?;
    let ctx = Ctx {
        client,
        js,
        metrics: Metrics::new(metrics),
        running: Arc::default(),
        batches: Arc::default(),
        signer,
    };
    tokio::spawn(watch_batches(ctx.clone(), cancel.clone()));
    tracing::info!("task dispatcher started");
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            msg = messages.next() => msg,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "task request consumer error; it resumes by itself");
                continue;
            }
            None => break,
        };
        match TaskEvent::decode(&msg.payload) {
            Ok(TaskEvent::TaskRequested(task)) => {
                let ctx = ctx.clone();
                let stop = cancel.child_token();
                ctx.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.task_id.clone(), stop.clone());
                tokio::spawn(async move {
                    let progress = async {
                        loop {
                            tokio::time::sleep(Duration::from_secs(10)).await;
                            let _ = msg.ack_with(AckKind::Progress).await;
                        }
                    };
                    tokio::select! {
                        _ = dispatch(&ctx, &task, stop) => {}
                        _ = progress => {}
                    }
                    ctx.running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&task.task_id);
                    let _ = msg.ack().await;
                });
            }
            Ok(TaskEvent::TaskCancelRequested(c)) => {
                let token = ctx
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&c.task_id)
                    .cloned();
                if let Some(t) = token {
                    t.cancel();
                }
                let _ = msg.ack().await;
            }
            Ok(other) => {
                tracing::warn!(event = other.name(), subject = %msg.subject, "not a task request; dropped");
                let _ = msg.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, subject = %msg.subject, "undecodable task request dropped");
                let _ = msg.ack_with(AckKind::Term).await;
            }
        }
    }
    Ok(())
}

/// How one offer went.
enum Offer {
    Accepted,
    Offline,
    Silent,
}

async fn offer(ctx: &Ctx, node: &str, payload: bytes::Bytes) -> Offer {
    ctx.metrics.offers.inc();
    let subject = subjects::dispatch(node);
    let headers = ctx.signer.sign(&subject, &payload);
    let request = ctx.client.request_with_headers(subject, headers, payload);
    match tokio::time::timeout(OFFER_TIMEOUT, request).await {
        Ok(Ok(_)) => {
            ctx.metrics.accepted.inc();
            Offer::Accepted
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Offer::Offline,
        Ok(Err(_)) | Err(_) => Offer::Silent,
    }
}

/// Offers `task` to its nodes, all at once or batch by batch (the next batch once every node
/// of the current one is done, or its deadline passed); a cancel stops it and records the nodes
/// never reached as cancelled.
async fn dispatch(ctx: &Ctx, task: &TaskRequested, stop: CancellationToken) {
    let size = match usize::try_from(task.batch_size) {
        Ok(n) if n > 0 => n,
        _ => task.expected_nodes.len().max(1),
    };
    let batches: Vec<&[String]> = task.expected_nodes.chunks(size).collect();
    let last = batches.len().saturating_sub(1);
    for (i, batch) in batches.into_iter().enumerate() {
        if stop.is_cancelled() {
            record_cancelled(ctx, task, batch).await;
            continue;
        }
        // Batches after the first get their own accept window, from when they start.
        let start_ms = if i == 0 {
            task.envelope.occurred_at_ms
        } else {
            nerve_platform::now_ms()
        };
        let done = Arc::new(tokio::sync::Notify::new());
        if i < last {
            ctx.batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    task.task_id.clone(),
                    Batch {
                        open: batch.iter().cloned().collect(),
                        done: done.clone(),
                    },
                );
        }
        let deadline_ms = offer_batch(ctx, task, batch, start_ms, &stop).await;
        if i < last {
            let wait_ms = (deadline_ms - nerve_platform::now_ms()).max(0) as u64;
            let all_done = ctx
                .batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&task.task_id)
                .is_none_or(|b| b.open.is_empty());
            if !all_done {
                tokio::select! {
                    _ = done.notified() => {}
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {
                        tracing::warn!(task_id = %task.task_id, batch = i, "batch not done by its deadline; going on");
                    }
                }
            }
            ctx.batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task.task_id);
        }
    }
    tracing::info!(task_id = %task.task_id, cancelled = stop.is_cancelled(), "dispatch over");
}

/// Records `nodes` as cancelled before they were reached.
async fn record_cancelled(ctx: &Ctx, task: &TaskRequested, nodes: &[String]) {
    for node in nodes {
        let event = TaskCancelled {
            envelope: Envelope::new::<TaskCancelled>(node.clone(), nerve_platform::now_ms()),
            task_id: task.task_id.clone(),
            was_running: false,
            duration_ms: 0,
        };
        ctx.publish(subjects::task_node(node), &event).await;
    }
}

/// Offers the task to `nodes` until each accepted or the accept deadline (counted from
/// `start_ms`) passed, then records the rest unreachable. Returns when this batch's nodes time
/// out at the latest.
async fn offer_batch(
    ctx: &Ctx,
    task: &TaskRequested,
    nodes: &[String],
    start_ms: i64,
    stop: &CancellationToken,
) -> i64 {
    let accept_deadline = start_ms + i64::from(task.accept_deadline_secs.max(1)) * 1000;
    let deadline_ms = accept_deadline + i64::from(task.spec.timeout_secs.max(1)) * 1000;
    // Node → (attempts, last outcome offline?).
    let mut pending: Vec<(String, i32, bool)> =
        nodes.iter().map(|n| (n.clone(), 0, false)).collect();
    let mut round = 0;
    while !pending.is_empty() && !stop.is_cancelled() {
        round += 1;
        let offers = futures::stream::iter(pending.drain(..).map(|(node, attempts, _)| {
            let event = TaskDispatched {
                envelope: Envelope::new::<TaskDispatched>(node.clone(), nerve_platform::now_ms()),
                task_id: task.task_id.clone(),
                attempt: attempts + 1,
                deadline_ms,
                spec: task.spec.clone(),
            };
            async move {
                let payload = nerve_schemas::encode(&event).unwrap_or_default();
                if event.attempt == 1 {
                    ctx.publish(subjects::task_node(&node), &event).await;
                }
                let outcome = offer(ctx, &node, payload.into()).await;
                if matches!(outcome, Offer::Accepted) {
                    let secs = (nerve_platform::now_ms() - start_ms).max(0) as f64 / 1000.0;
                    ctx.metrics.dispatch_time.observe_secs(secs);
                }
                (node, event.attempt, outcome)
            }
        }))
        .buffer_unordered(MAX_INFLIGHT)
        .collect::<Vec<_>>()
        .await;
        for (node, attempts, outcome) in offers {
            match outcome {
                Offer::Accepted => {}
                Offer::Offline => pending.push((node, attempts, true)),
                Offer::Silent => pending.push((node, attempts, false)),
            }
        }
        if pending.is_empty() || nerve_platform::now_ms() >= accept_deadline {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
    if stop.is_cancelled() {
        // Nodes running it stop it themselves; those never reached are recorded as cancelled.
        for node in nodes {
            let _ = ctx
                .client
                .publish(subjects::cancel(node), task.task_id.clone().into())
                .await;
        }
        let _ = ctx.client.flush().await;
        let never: Vec<String> = pending.into_iter().map(|(n, _, _)| n).collect();
        record_cancelled(ctx, task, &never).await;
        return deadline_ms;
    }
    for (node, attempts, offline) in pending {
        ctx.metrics.unreachable.inc();
        let event = TaskUnreachable {
            envelope: Envelope::new::<TaskUnreachable>(node.clone(), nerve_platform::now_ms()),
            task_id: task.task_id.clone(),
            reason: if offline { "offline" } else { "no_accept" }.into(),
            attempts,
        };
        ctx.publish(subjects::task_node(&node), &event).await;
    }
    tracing::debug!(task_id = %task.task_id, rounds = round, "batch offered");
    deadline_ms
}
