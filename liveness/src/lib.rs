//! The liveness tracker: watches every node's heartbeats as they reach JetStream and publishes
//! `NodeBecameSuspect`, `NodeWentOffline` and `NodeCameBack` to the events stream, where the
//! projector folds them into `node_liveness` (what the API's status reads).
//!
//! At start it restores its past judgements from its own events (the last one per node), then
//! reads the last heartbeat of every node and follows new ones. It judges only while it is
//! caught up with the heartbeat stream and connected to NATS, and silence counts from the moment
//! it started watching ([`tracker`] has the rules). Event ids are derived from the node, the new
//! state and the heartbeat they judge, so two trackers publish the same ids and JetStream keeps
//! one of each.

pub mod tracker;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use nerve_ingest::Outgoing;
use nerve_platform::config::LivenessConfig;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use nerve_schemas::{
    Envelope, Event, HeartbeatRecorded, LivenessChange, NodeBecameSuspect, NodeCameBack,
    NodeWentOffline, subjects,
};
use tokio_util::sync::CancellationToken;

pub use tracker::{State, Thresholds, Tracker, Transition};

/// How far behind the newest heartbeat the tracker may fall and still judge.
const MAX_LAG_MS: i64 = 5_000;
/// How long to wait for a publish acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the tracker could not run.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error("liveness: cannot read stream {stream}: {message}")]
    Stream { stream: String, message: String },
}

struct Metrics {
    transitions: [Counter; 3],
    publish_errors: Counter,
    bad_heartbeats: Counter,
    nodes: [Gauge; 3],
    watching: Gauge,
}

impl Metrics {
    fn new(r: &Registry) -> Self {
        let counter = |to: &str| {
            r.counter(
                "nerve_liveness_transitions_total",
                "Liveness events published, by the state entered.",
                &[("to", to)],
            )
        };
        let gauge = |state: &str| {
            r.gauge(
                "nerve_liveness_nodes",
                "Nodes by liveness, as the tracker sees them.",
                &[("state", state)],
            )
        };
        Self {
            transitions: [counter("online"), counter("suspect"), counter("offline")],
            publish_errors: r.counter(
                "nerve_liveness_publish_errors_total",
                "Liveness events that could not be published (retried).",
                &[],
            ),
            bad_heartbeats: r.counter(
                "nerve_liveness_bad_heartbeats_total",
                "Heartbeats the tracker could not decode (ignored; the projector rejects them).",
                &[],
            ),
            nodes: [gauge("online"), gauge("suspect"), gauge("offline")],
            watching: r.gauge(
                "nerve_liveness_watching",
                "1 while the tracker is caught up and connected, so judging.",
                &[],
            ),
        }
    }
}

fn index(s: State) -> usize {
    match s {
        State::Online => 0,
        State::Suspect => 1,
        State::Offline => 2,
    }
}

fn published_ms(msg: &jetstream::Message) -> Option<(i64, u64)> {
    msg.info()
        .ok()
        .map(|i| (nerve_ingest::publish::published_ms(&i), i.pending))
}

/// The liveness event of a transition, with its derived id.
fn encode(t: &Transition, now_ms: i64, detector: &str) -> (String, Vec<u8>) {
    let key = format!("{}/{}/{}", t.node_id, t.to.as_str(), t.last_heartbeat_ms);
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string();
    fn body<E: Event>(t: &Transition, id: &str, now_ms: i64, detector: &str) -> LivenessChange {
        let mut envelope = Envelope::new::<E>(t.node_id.clone(), now_ms);
        envelope.event_id = id.to_owned();
        LivenessChange {
            envelope,
            last_heartbeat_at_ms: t.last_heartbeat_ms,
            silent_for_ms: t.silent_for_ms,
            heartbeat_interval_secs: t.interval_secs,
            missed_heartbeats: t.missed,
            previous_state: t.from.as_str().to_owned(),
            detector: detector.to_owned(),
        }
    }
    let bytes = match t.to {
        State::Online => nerve_schemas::encode(&NodeCameBack(body::<NodeCameBack>(
            t, &id, now_ms, detector,
        ))),
        State::Suspect => nerve_schemas::encode(&NodeBecameSuspect(body::<NodeBecameSuspect>(
            t, &id, now_ms, detector,
        ))),
        State::Offline => nerve_schemas::encode(&NodeWentOffline(body::<NodeWentOffline>(
            t, &id, now_ms, detector,
        ))),
    };
    // Encoding plain data with a released schema cannot fail short of a build defect.
    (id, bytes.unwrap_or_default())
}

/// The state a liveness event sets, and its body.
pub fn decode_liveness(payload: &[u8]) -> Result<(State, LivenessChange), String> {
    let (state, change) = nerve_schemas::liveness_of(payload)?;
    let state = match state {
        "suspect" => State::Suspect,
        "offline" => State::Offline,
        _ => State::Online,
    };
    Ok((state, change))
}

async fn ordered(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<(consumer::pull::Ordered, u64), LivenessError> {
    let err = |message: String| LivenessError::Stream {
        stream: stream.to_owned(),
        message,
    };
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let pending = c
        .info()
        .await
        .map(|i| i.num_pending)
        .map_err(|e| err(e.to_string()))?;
    let messages = c.messages().await.map_err(|e| err(e.to_string()))?;
    Ok((messages, pending))
}

/// Runs the tracker until `cancel`.
pub async fn run(
    client: async_nats::Client,
    config: &LivenessConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), LivenessError> {
    let m = Metrics::new(metrics);
    let js = jetstream::new(client.clone());
    let detector = format!(
        "{}/{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "nerve".into()),
        std::process::id()
    );
    let mut tracker = Tracker::new(Thresholds {
        suspect_after_missed: config.suspect_after_missed_heartbeats.max(1),
        offline_grace_ms: (config.offline_grace_secs as i64).saturating_mul(1000),
    });
    // 1. Past judgements: the last liveness event of every node.
    if !restore(&js, &mut tracker, &cancel).await? {
        return Ok(());
    }
    // 2. The last heartbeat of every node, then every new one.
    let (mut beats, pending) = ordered(
        &js,
        nerve_ingest::TELEMETRY_STREAM,
        subjects::HEARTBEATS_ALL,
    )
    .await?;
    let mut watch = Watch {
        caught_up: pending == 0,
        connected: true,
        resume_grace_ms: (config.resume_grace_secs as i64).saturating_mul(1000),
    };
    if watch.caught_up {
        tracker.watch_from(watch.resume());
    }
    let mut tick = tokio::time::interval(Duration::from_millis(config.check_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        restored = tracker.counts().1 + tracker.counts().2,
        "liveness tracker started"
    );
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            msg = beats.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "heartbeat consumer error; it resumes by itself");
                        continue;
                    }
                    None => return Err(LivenessError::Stream {
                        stream: nerve_ingest::TELEMETRY_STREAM.into(),
                        message: "heartbeat consumer ended".into(),
                    }),
                };
                let Some((arrived_ms, left)) = published_ms(&msg) else { continue };
                watch.heartbeat_arrived(&mut tracker, left, arrived_ms);
                let Some((node, interval_secs)) = heartbeat_of(&msg) else {
                    m.bad_heartbeats.inc();
                    continue;
                };
                if let Some(t) = tracker.heartbeat(&node, arrived_ms, interval_secs) {
                    publish(&js, &mut tracker, &m, t, &detector).await;
                }
            }
            _ = tick.tick() => {
                let up = matches!(client.connection_state(), async_nats::connection::State::Connected);
                watch.connection(&mut tracker, up);
                for t in tracker.judge(nerve_platform::now_ms()) {
                    publish(&js, &mut tracker, &m, t, &detector).await;
                }
                let (on, su, off) = tracker.counts();
                for (g, n) in m.nodes.iter().zip([on, su, off]) {
                    g.set(n as i64);
                }
                m.watching.set(i64::from(tracker.is_watching()));
            }
        }
    }
    Ok(())
}

/// Restores the tracker's past judgements from the last liveness event of every node; false
/// when cancelled meanwhile.
async fn restore(
    js: &jetstream::Context,
    tracker: &mut Tracker,
    cancel: &CancellationToken,
) -> Result<bool, LivenessError> {
    let (mut past, mut pending) =
        ordered(js, nerve_ingest::EVENTS_STREAM, subjects::LIVENESS_ALL).await?;
    while pending > 0 {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(false),
            msg = past.next() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        let Some((at_ms, left)) = published_ms(&msg) else {
            continue;
        };
        pending = left;
        match decode_liveness(&msg.payload) {
            Ok((state, e)) => {
                tracker.restore(&e.envelope.node_id, state, at_ms, e.last_heartbeat_at_ms)
            }
            Err(e) => {
                tracing::warn!(error = %e, subject = %msg.subject, "unreadable liveness event")
            }
        }
    }
    Ok(true)
}

/// The node a heartbeat message is from and its interval; `None` for one that does not decode
/// or names another node than its subject.
fn heartbeat_of(msg: &jetstream::Message) -> Option<(String, i32)> {
    let node = subjects::node_id_of(msg.subject.as_str())?;
    let beat = nerve_schemas::decode::<HeartbeatRecorded>(&msg.payload).ok()?;
    (beat.envelope.node_id == node).then(|| (node.to_owned(), beat.interval_secs))
}

/// When silence may count: the tracker has caught up with the heartbeat stream, is not far
/// behind it, and NATS is reachable; after each pause it resumes with a grace period.
struct Watch {
    caught_up: bool,
    connected: bool,
    resume_grace_ms: i64,
}

impl Watch {
    /// When silence counts from, resuming now.
    fn resume(&self) -> i64 {
        nerve_platform::now_ms() + self.resume_grace_ms
    }

    /// A heartbeat published at `arrived_ms` with `left` more behind it in the stream.
    fn heartbeat_arrived(&mut self, tracker: &mut Tracker, left: u64, arrived_ms: i64) {
        let now = nerve_platform::now_ms();
        if !self.caught_up && left == 0 {
            self.caught_up = true;
            tracker.watch_from(self.resume());
            tracing::info!("caught up with the heartbeat stream; judging");
        }
        if self.caught_up {
            let behind = left > 0 && now - arrived_ms > MAX_LAG_MS;
            if behind && tracker.is_watching() {
                tracing::warn!(pending = left, "behind the heartbeat stream; not judging");
                tracker.pause();
            } else if !behind && !tracker.is_watching() && self.connected {
                tracker.watch_from(self.resume());
            }
        }
    }

    /// NATS is reachable (`up`) or not, as of now.
    fn connection(&mut self, tracker: &mut Tracker, up: bool) {
        if !up && self.connected {
            tracing::warn!("NATS unreachable; not judging until it is back");
            tracker.pause();
        } else if up && !self.connected && self.caught_up {
            tracing::info!("NATS back; silence counts again after the resume grace");
            tracker.watch_from(self.resume());
        }
        self.connected = up;
    }
}

/// Publishes a transition and applies it once JetStream has it; a failure is retried by the
/// next judgement (or the next heartbeat, for a comeback).
async fn publish(
    js: &jetstream::Context,
    tracker: &mut Tracker,
    m: &Metrics,
    t: Transition,
    detector: &str,
) {
    let now = nerve_platform::now_ms();
    let (id, payload) = encode(&t, now, detector);
    let out = Outgoing::new(subjects::liveness(&t.node_id), id, payload);
    match tokio::time::timeout(PUBLISH_TIMEOUT, out.publish(js)).await {
        Ok(Ok(ack)) => {
            tracing::info!(
                node_id = %t.node_id,
                from = t.from.as_str(),
                to = t.to.as_str(),
                silent_for_ms = t.silent_for_ms,
                duplicate = ack.duplicate,
                "liveness changed"
            );
            tracker.applied(&t, now);
            m.transitions[index(t.to)].inc();
        }
        Ok(Err(e)) => {
            m.publish_errors.inc();
            tracing::warn!(node_id = %t.node_id, error = %e, "liveness event not published");
        }
        Err(_) => {
            m.publish_errors.inc();
            tracing::warn!(node_id = %t.node_id, "liveness event not acknowledged in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_derived_so_two_trackers_agree() {
        let t = Transition {
            node_id: "n1".into(),
            from: State::Online,
            to: State::Offline,
            last_heartbeat_ms: 1_700_000_000_000,
            silent_for_ms: 90_000,
            interval_secs: 10,
            missed: 9,
        };
        let (a, bytes) = encode(&t, 1, "a/1");
        let (b, _) = encode(&t, 2, "b/2");
        assert_eq!(a, b);
        let (state, e) = decode_liveness(&bytes).expect("decode");
        assert_eq!(state, State::Offline);
        assert_eq!(e.envelope.event_id, a);
        assert_eq!(e.previous_state, "online");
        let back = Transition {
            to: State::Online,
            from: State::Offline,
            last_heartbeat_ms: t.last_heartbeat_ms + 1,
            ..t.clone()
        };
        assert_ne!(encode(&back, 1, "a").0, a);
        assert!(decode_liveness(b"junk").is_err());
    }
}
