//! Latency probes: heartbeats of one dedicated node, published on the same stream as the load at
//! a fixed rate; a poller asks ClickHouse every 25 ms which probes are queryable. Latency =
//! first poll that sees the probe − its publish time (so it includes up to one poll interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use nerve_ingest::Outgoing;
use nerve_projections::heartbeats::HEARTBEATS;
use nerve_schemas::subjects;
use tokio::task::JoinHandle;

/// The probe node's id.
pub const PROBE_NODE: &str = "loadtest-probe";
const POLL: Duration = Duration::from_millis(25);
/// Once the load stopped, probes still unseen when no new one was seen for this long count as
/// missing (a slow drain that still makes progress is waited for).
const GIVE_UP: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    /// Acked probes: when each publish started, its heartbeat seq and its time (ms).
    published: HashMap<String, (Instant, u64, i64)>,
    seen: HashMap<String, Instant>,
    done_publishing: bool,
}

pub struct Prober {
    started: Instant,
    state: Arc<Mutex<State>>,
    /// None once [`Prober::published_count`] waited for it.
    publisher: Option<JoinHandle<()>>,
    poller: JoinHandle<anyhow::Result<()>>,
}

/// Latency percentiles over all probes.
#[derive(Debug)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub probes: usize,
    pub missing: usize,
    /// (seconds since the prober started, latency ms) of every probe seen, in publish order.
    pub points: Vec<(f64, f64)>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Prober {
    pub fn start(js: Context, ch: clickhouse::Client, per_sec: f64, duration: Duration) -> Self {
        let started = Instant::now();
        let state = Arc::new(Mutex::new(State::default()));
        let every = Duration::from_secs_f64(1.0 / per_sec.max(0.1));
        let publisher = {
            let state = state.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut tick = tokio::time::interval(every);
                let mut seq = 0;
                while started.elapsed() < duration {
                    tick.tick().await;
                    let occurred_ms = nerve_platform::now_ms();
                    let hb = crate::sim::heartbeat(PROBE_NODE, seq, occurred_ms);
                    let this_seq = seq as u64;
                    seq += 1;
                    let Ok(out) = Outgoing::event(subjects::heartbeat(PROBE_NODE), &hb) else {
                        continue;
                    };
                    let at = Instant::now();
                    if out.publish(&js).await.is_ok() {
                        lock(&state)
                            .published
                            .insert(hb.envelope.event_id, (at, this_seq, occurred_ms));
                    }
                }
                lock(&state).done_publishing = true;
            })
        };
        let poller = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut last_new = Instant::now();
                loop {
                    // Only probes from the oldest unseen one on, and by the primary key
                    // (node_id, ts) only the parts written since it: the poll reads a granule or
                    // two however long the run and however many parts the table has.
                    let (from_seq, from_ms) = {
                        let s = lock(&state);
                        s.published
                            .iter()
                            .filter(|(id, _)| !s.seen.contains_key(*id))
                            .map(|(_, (_, seq, ms))| (*seq, *ms))
                            .min()
                            .unwrap_or_else(|| (s.published.len() as u64, nerve_platform::now_ms()))
                    };
                    let ids: Result<Vec<String>, _> = ch
                        .query(&format!(
                            "SELECT toString(event_id) FROM {HEARTBEATS} \
                             WHERE node_id = ? AND ts >= toDateTime(?) AND seq >= ?"
                        ))
                        .bind(PROBE_NODE)
                        .bind((from_ms / 1000 - 1).max(0) as u32)
                        .bind(from_seq)
                        .fetch_all()
                        .await;
                    // A drill takes ClickHouse down: asked again on the next poll.
                    let Ok(ids) = ids else {
                        tokio::time::sleep(POLL).await;
                        continue;
                    };
                    let now = Instant::now();
                    let finished = {
                        let mut s = lock(&state);
                        for id in ids {
                            if let std::collections::hash_map::Entry::Vacant(e) = s.seen.entry(id) {
                                e.insert(now);
                                last_new = now;
                            }
                        }
                        s.done_publishing
                            && (s.published.keys().all(|k| s.seen.contains_key(k))
                                || last_new.elapsed() > GIVE_UP)
                    };
                    if finished {
                        return Ok(());
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
        };
        Self {
            started,
            state,
            publisher: Some(publisher),
            poller,
        }
    }

    /// Probe events that will be in the table: waits until the publisher, which runs as long as
    /// the load, published its last probe, so none is still in flight when the count is taken.
    pub async fn published_count(&mut self) -> anyhow::Result<u64> {
        if let Some(publisher) = self.publisher.take() {
            publisher.await?;
        }
        Ok(lock(&self.state).published.len() as u64)
    }

    pub async fn finish(mut self) -> anyhow::Result<Latency> {
        self.published_count().await?;
        self.poller.await??;
        let s = lock(&self.state);
        let mut points: Vec<(f64, f64)> = s
            .published
            .iter()
            .filter_map(|(id, (at, _, _))| {
                s.seen.get(id).map(|seen| {
                    (
                        at.duration_since(self.started).as_secs_f64(),
                        seen.duration_since(*at).as_secs_f64() * 1000.0,
                    )
                })
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut ms: Vec<f64> = points.iter().map(|p| p.1).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| quantile(&ms, p).unwrap_or(f64::NAN);
        Ok(Latency {
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
            probes: s.published.len(),
            missing: s.published.len() - ms.len(),
            points,
        })
    }
}

/// The `p` quantile of ascending `sorted` (nearest rank), `None` when it is empty.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
