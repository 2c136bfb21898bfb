//! The live side of a rebuild: heartbeats keep arriving at a set rate while `nerve replay`
//! rebuilds and cuts over the telemetry projection, and a probe node's heartbeat is timed from
//! publish to queryable every 250 ms — the lag an operator would see on the console.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use futures::future::join_all;
use nerve_schemas::subjects;
use tokio_util::sync::CancellationToken;

use crate::services::Services;

/// Publishes `rate` heartbeats a second (every 100 ms a tenth) for `nodes` simulated nodes
/// (`<prefix>000000`, …) until `stop`; the heartbeats published.
pub async fn feed(
    js: async_nats::jetstream::Context,
    prefix: &'static str,
    nodes: u32,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut sent, mut seq) = (0u64, 0i64);
    let per_tick = (rate / 10).max(1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(sent),
            _ = tick.tick() => {}
        }
        seq += 1;
        let now = nerve_platform::now_ms();
        let mut acks = Vec::with_capacity(per_tick as usize);
        for i in 0..per_tick {
            let node = format!(
                "{prefix}{:06}",
                (sent + u64::from(i)) % u64::from(nodes.max(1))
            );
            let hb = crate::sim::heartbeat(&node, seq, now);
            let payload = nerve_schemas::encode(&hb)?;
            acks.push(
                js.publish(subjects::heartbeat(&node), payload.into())
                    .await?,
            );
        }
        for ack in join_all(acks.into_iter().map(IntoFuture::into_future)).await {
            ack?;
        }
        sent += u64::from(per_tick);
    }
}

/// Every 250 ms until `stop`: publishes a heartbeat of node `probe` and waits until ClickHouse
/// has it; each wait in milliseconds.
pub async fn probe(services: &Services, stop: CancellationToken) -> anyhow::Result<Vec<f64>> {
    let mut waits = Vec::new();
    let mut seq = 0i64;
    while !stop.is_cancelled() {
        seq += 1;
        let hb = crate::sim::heartbeat("probe", seq, nerve_platform::now_ms());
        let payload = nerve_schemas::encode(&hb)?;
        let sent = Instant::now();
        services
            .js
            .publish(subjects::heartbeat("probe"), payload.into())
            .await?
            .await?;
        loop {
            let seen: u64 = services
                .ch
                .query("SELECT count() FROM heartbeats WHERE node_id = 'probe' AND seq = ?")
                .bind(seq as u64)
                .fetch_one()
                .await?;
            if seen > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(waits)
}

/// p50, p99 and max of `ms`.
pub fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    (pct(0.5), pct(0.99), ms[ms.len() - 1])
}
