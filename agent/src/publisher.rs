//! Publishes events in order, each with `Nats-Msg-Id` = event id and its JetStream ack awaited.
//! Every event first goes to the on-disk [`Outbox`](crate::buffer::Outbox) and leaves it only
//! once acknowledged, so while NATS is unreachable (or the agent restarts) events wait on disk
//! and are retried with the same ids — a retry after a lost ack is deduplicated by JetStream.
//! Beyond the outbox's bounds the oldest events are dropped and counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::Context;
pub use nerve_ingest::Outgoing;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buffer::{BufferError, Outbox};

/// Longest pause between publish retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long shutdown tries to flush the outbox (what remains stays on disk for the next start).
const FLUSH_ON_STOP: Duration = Duration::from_secs(3);

pub struct Publisher {
    js: Context,
    outbox: Arc<Mutex<Outbox>>,
    timeout: Duration,
    published: Counter,
    dropped: Counter,
    errors: Counter,
    buffered: Gauge,
}

impl Publisher {
    pub fn new(js: Context, outbox: Outbox, timeout: Duration, metrics: &Registry) -> Self {
        Self {
            js,
            outbox: Arc::new(Mutex::new(outbox)),
            timeout,
            published: metrics.counter(
                "nerve_agent_events_published_total",
                "Events acknowledged by JetStream.",
                &[],
            ),
            dropped: metrics.counter(
                "nerve_agent_events_dropped_total",
                "Events dropped: the outbox was full or they were too old, or it could not be written.",
                &[],
            ),
            errors: metrics.counter(
                "nerve_agent_publish_errors_total",
                "Failed publish attempts (retried).",
                &[],
            ),
            buffered: metrics.gauge(
                "nerve_agent_buffered_events",
                "Events in the outbox waiting to be published.",
                &[],
            ),
        }
    }

    /// Runs `f` on the outbox on a blocking thread (it reads, writes and syncs files).
    async fn outbox<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Outbox) -> Result<T, BufferError> + Send + 'static,
    ) -> Result<T, String> {
        let outbox = self.outbox.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = outbox.lock().unwrap_or_else(|p| p.into_inner());
            let r = f(&mut guard);
            (r, guard.len())
        })
        .await
        .map_err(|e| format!("outbox task failed: {e}"))?;
        self.buffered.set(result.1 as i64);
        result.0.map_err(|e| e.to_string())
    }

    async fn push(&self, out: Outgoing) {
        let now = nerve_platform::now_ms();
        match self.outbox(move |o| o.push(&out, now)).await {
            Ok(dropped) => self.dropped.add(dropped),
            Err(error) => {
                self.dropped.inc();
                tracing::error!(%error, "cannot write the outbox; event lost");
            }
        }
    }

    async fn publish(&self, out: &Outgoing) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, out.publish(&self.js)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no ack within {:?}", self.timeout)),
        }
    }

    /// Publishes the oldest event; `Ok(false)` when the outbox is empty.
    async fn publish_front(&self) -> Result<bool, String> {
        let now = nerve_platform::now_ms();
        // One trip to the blocking pool: drop what aged out, then read the oldest event.
        let (dropped, front) = self
            .outbox(move |o| Ok((o.enforce(now)?, o.front()?)))
            .await?;
        if dropped > 0 {
            self.dropped.add(dropped);
            tracing::warn!(dropped, "outbox events too old; dropped");
        }
        let Some(out) = front else {
            return Ok(false);
        };
        self.publish(&out).await?;
        self.outbox(|o| o.pop_front()).await?;
        self.published.inc();
        Ok(true)
    }

    /// Publishes everything received on `rx` until `cancel`, then flushes for a short while.
    pub async fn run(self, mut rx: mpsc::Receiver<Outgoing>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            while let Ok(out) = rx.try_recv() {
                self.push(out).await;
            }
            match self.publish_front().await {
                Ok(true) => {
                    if failing {
                        tracing::info!("publishing again");
                        failing = false;
                    }
                    backoff = Duration::from_millis(100);
                }
                Ok(false) => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        out = rx.recv() => match out {
                            Some(out) => self.push(out).await,
                            None => break,
                        },
                    }
                }
                Err(error) => {
                    self.errors.inc();
                    if !failing {
                        tracing::warn!(%error, "publish failed; keeping events in the outbox");
                        failing = true;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        while let Ok(out) = rx.try_recv() {
            self.push(out).await;
        }
        let deadline = tokio::time::Instant::now() + FLUSH_ON_STOP;
        while tokio::time::Instant::now() < deadline {
            match self.publish_front().await {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
        let left = self.buffered.get();
        if left > 0 {
            tracing::warn!(
                events = left,
                "stopping; events stay in the outbox for the next start"
            );
        }
    }
}
