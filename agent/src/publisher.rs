//! Publishes events in order, each with `Nats-Msg-Id` = event id and its JetStream ack awaited.
//! While NATS is unreachable events wait in a bounded in-memory buffer and are retried with the
//! same ids (so a retry after a lost ack is deduplicated by JetStream); when the buffer is full the
//! oldest event is dropped and counted.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use bytes::Bytes;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One encoded event ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn new(subject: String, msg_id: String, payload: Vec<u8>) -> Self {
        Self {
            subject,
            msg_id,
            payload: Bytes::from(payload),
        }
    }
}

/// Longest pause between publish retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long shutdown tries to flush the buffer.
const FLUSH_ON_STOP: Duration = Duration::from_secs(3);

pub struct Publisher {
    js: Context,
    queue: VecDeque<Outgoing>,
    max_events: usize,
    timeout: Duration,
    published: Counter,
    dropped: Counter,
    errors: Counter,
    buffered: Gauge,
}

impl Publisher {
    pub fn new(js: Context, max_events: usize, timeout: Duration, metrics: &Registry) -> Self {
        Self {
            js,
            queue: VecDeque::new(),
            max_events: max_events.max(1),
            timeout,
            published: metrics.counter(
                "nerve_agent_events_published_total",
                "Events acknowledged by JetStream.",
                &[],
            ),
            dropped: metrics.counter(
                "nerve_agent_events_dropped_total",
                "Oldest buffered events dropped because the buffer was full.",
                &[],
            ),
            errors: metrics.counter(
                "nerve_agent_publish_errors_total",
                "Failed publish attempts (retried).",
                &[],
            ),
            buffered: metrics.gauge(
                "nerve_agent_buffered_events",
                "Events waiting to be published.",
                &[],
            ),
        }
    }

    fn push(&mut self, out: Outgoing) {
        if self.queue.len() >= self.max_events {
            self.queue.pop_front();
            self.dropped.inc();
        }
        self.queue.push_back(out);
        self.buffered.set(self.queue.len() as i64);
    }

    async fn publish_front(&self) -> Result<(), String> {
        let Some(out) = self.queue.front() else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", out.msg_id.as_str());
        let attempt = async {
            let ack = self
                .js
                .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(|_| ()).map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| format!("no ack within {:?}", self.timeout))?
    }

    /// Publishes everything received on `rx` until `cancel`, then flushes for a short while.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            while let Ok(out) = rx.try_recv() {
                self.push(out);
            }
            if self.queue.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    out = rx.recv() => match out {
                        Some(out) => self.push(out),
                        None => break,
                    },
                }
                continue;
            }
            match self.publish_front().await {
                Ok(()) => {
                    self.queue.pop_front();
                    self.buffered.set(self.queue.len() as i64);
                    self.published.inc();
                    if failing {
                        tracing::info!(buffered = self.queue.len(), "publishing again");
                        failing = false;
                    }
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    self.errors.inc();
                    if !failing {
                        tracing::warn!(%error, "publish failed; buffering and retrying");
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
            self.push(out);
        }
        let deadline = tokio::time::Instant::now() + FLUSH_ON_STOP;
        while !self.queue.is_empty() && tokio::time::Instant::now() < deadline {
            if self.publish_front().await.is_err() {
                break;
            }
            self.queue.pop_front();
            self.published.inc();
        }
        if !self.queue.is_empty() {
            tracing::warn!(lost = self.queue.len(), "stopping with unpublished events");
        }
    }
}
