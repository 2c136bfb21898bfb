//! The simulated fleet: nodes spread over a few NATS connections, each connection publishing its
//! share of the offered rate with pipelined acks (never awaiting each ack in turn).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nerve_ingest::Outgoing;
use nerve_platform::config::Config;
use nerve_schemas::{Envelope, GpuSample, HeartbeatRecorded, subjects};

use crate::Args;

/// GPUs per simulated node, in its inventory and its heartbeats (8, as an H100 node; `api
/// --gpus-per-node` changes it for the whole run, to show what the per-GPU data costs).
pub static GPUS_PER_NODE: AtomicU32 = AtomicU32::new(8);

fn gpus_per_node() -> i32 {
    GPUS_PER_NODE.load(Ordering::Relaxed) as i32
}

/// Totals over every connection.
#[derive(Debug, Default)]
pub struct Published {
    pub acked: u64,
    pub errors: u64,
}

/// Publishes for `args.duration_secs` at `rate` events/s in total; `acked` counts acks as they
/// come.
pub async fn run(
    args: &Args,
    config: &Config,
    rate: f64,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Published> {
    let conns = args.connections.max(1);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let client = nerve_ingest::connect(
            &config.nats,
            nerve_ingest::Who::Role(&format!("loadtest-{c}")),
            false,
        )
        .await
        .context("simulator connection")?;
        let nodes: Vec<String> = (0..args.nodes)
            .filter(|n| n % conns == c)
            .map(|n| format!("sim-{n:06}"))
            .collect();
        let share = rate / f64::from(conns);
        let duration = Duration::from_secs(args.duration_secs);
        let max_inflight = args.max_inflight.max(1);
        tasks.push(tokio::spawn(connection(
            client,
            nodes,
            share,
            duration,
            max_inflight,
            acked.clone(),
        )));
    }
    let mut total = Published::default();
    for t in tasks {
        let p = t.await??;
        total.acked += p.acked;
        total.errors += p.errors;
    }
    Ok(total)
}

/// A plausible inventory of a simulated 8-GPU node.
pub fn inventory(node: &str, ts_ms: i64) -> nerve_schemas::InventoryReported {
    use nerve_schemas::{CpuInfo, Disk, GpuDevice, InventoryReported, NetInterface};
    InventoryReported {
        envelope: Envelope::new::<InventoryReported>(node, ts_ms),
        hostname: node.to_owned(),
        os_name: "Ubuntu".into(),
        os_version: "22.04".into(),
        kernel_version: "6.5.0".into(),
        arch: "x86_64".into(),
        boot_time_ms: ts_ms - 86_400_000,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        cpu: CpuInfo {
            model: "Simulated EPYC".into(),
            vendor: "AuthenticAMD".into(),
            physical_cores: Some(64),
            logical_cores: 128,
            frequency_mhz: 3_700,
            sockets: Some(2),
            threads_per_core: Some(2),
            max_frequency_mhz: Some(3_700),
            ..CpuInfo::default()
        },
        memory_total_bytes: 1 << 40,
        swap_total_bytes: 0,
        disks: vec![Disk {
            name: "/dev/nvme0n1".into(),
            mount_point: "/".into(),
            file_system: "ext4".into(),
            kind: "ssd".into(),
            total_bytes: 8 << 40,
            removable: false,
        }],
        interfaces: vec![NetInterface {
            name: "ib0".into(),
            mac: "02:00:00:00:00:01".into(),
            addresses: vec!["10.1.0.1/16".into()],
            mtu: 4092,
            speed_mbps: Some(400_000),
            state: "up".into(),
            driver: "mlx5_core".into(),
        }],
        gpus: (0..gpus_per_node())
            .map(|i| GpuDevice {
                index: i,
                uuid: format!("GPU-{node}-{i}"),
                name: "Simulated H100".into(),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + i),
                memory_total_bytes: 80 << 30,
                driver_version: "550.54".into(),
                cuda_version: "12.4".into(),
                compute_capability: "9.0".into(),
                power_limit_w: Some(700.0),
                ecc_enabled: Some(true),
                mig_mode: "disabled".into(),
                nvlink_count: Some(18),
                ..GpuDevice::default()
            })
            .collect(),
        memory: None,
        block_devices: vec![],
        system: None,
        location: None,
        collector_errors: vec![],
    }
}

/// Node `node`'s heartbeat number `seq`, taken at `ts_ms`: eight H100s by default, every field a
/// real one fills, numbers that move with `seq`.
pub fn heartbeat(node: &str, seq: i64, ts_ms: i64) -> HeartbeatRecorded {
    let mut hb = HeartbeatRecorded {
        envelope: Envelope::new::<HeartbeatRecorded>(node, ts_ms),
        seq: 0,
        interval_secs: 30,
        uptime_secs: 0,
        cpu_pct: 0.0,
        cpu_count: 128,
        load1: 0.0,
        load5: 11.0,
        load15: 10.0,
        mem_total_bytes: 1 << 40,
        mem_used_bytes: 0,
        swap_total_bytes: 0,
        swap_used_bytes: 0,
        disk_total_bytes: 8 << 40,
        disk_used_bytes: 2 << 40,
        net_rx_bytes_per_sec: 0.0,
        net_tx_bytes_per_sec: 5.0e7,
        gpus: (0..gpus_per_node())
            .map(|i| GpuSample {
                index: i,
                uuid: format!("GPU-{node}-{i}"),
                mem_util_pct: 60.0,
                mem_used_bytes: 60 << 30,
                mem_total_bytes: 80 << 30,
                power_w: 600.0,
                // The fields a real H100 fills, so messages have their real size.
                power_limit_w: Some(700.0),
                enc_util_pct: Some(0.0),
                dec_util_pct: Some(0.0),
                sm_clock_mhz: Some(1980),
                mem_clock_mhz: Some(2619),
                graphics_clock_mhz: Some(1980),
                temp_slowdown_c: Some(87),
                temp_shutdown_c: Some(92),
                ecc_corrected: Some(0),
                ecc_uncorrected: Some(0),
                remapped_rows_correctable: Some(0),
                remapped_rows_uncorrectable: Some(0),
                remapped_rows_pending: Some(false),
                remapped_rows_failure: Some(false),
                throttle_reasons: 0x4,
                throttle_reason_names: vec!["sw_power_cap".into()],
                nvlink_active: Some(18),
                nvlink_total: Some(18),
                mig_mode: "disabled".into(),
                health: "ok".into(),
                ..GpuSample::default()
            })
            .collect(),
    };
    set_moving(&mut hb, seq);
    hb
}

/// The numbers of heartbeat `seq` that move from one heartbeat to the next.
fn set_moving(hb: &mut HeartbeatRecorded, seq: i64) {
    let wobble = (seq % 97) as f32;
    hb.seq = seq;
    hb.uptime_secs = 86_400 + seq * 30;
    hb.cpu_pct = 20.0 + wobble * 0.6;
    hb.load1 = 12.0 + wobble * 0.1;
    hb.mem_used_bytes = (1 << 39) + seq * 4096;
    hb.net_rx_bytes_per_sec = 1.0e8 + f64::from(wobble) * 1.0e5;
    for g in &mut hb.gpus {
        g.util_pct = 80.0 + wobble * 0.2;
        g.temperature_c = 65.0 + wobble * 0.1;
    }
}

/// One node's heartbeats as a publisher sends them, one after another: built once, then each
/// beat refills the envelope and the moving numbers in place, as an agent's sampler refills its
/// buffers, so a simulator spends its CPU on what an agent's publish costs (encoding, the
/// message) rather than on rebuilding a node's strings and GPU records per beat. The beats
/// equal `heartbeat(node, seq, ts)` but for the event id.
pub struct Beats {
    hb: HeartbeatRecorded,
    seq: i64,
}

impl Beats {
    pub fn new(node: &str) -> Self {
        Self {
            hb: heartbeat(node, 0, 0),
            seq: 0,
        }
    }

    /// The node's next heartbeat (seq 0, 1, …), taken at `ts_ms`, with a fresh event id.
    pub fn next(&mut self, ts_ms: i64) -> &HeartbeatRecorded {
        use std::fmt::Write as _;
        let envelope = &mut self.hb.envelope;
        envelope.event_id.clear();
        let _ = write!(envelope.event_id, "{}", uuid::Uuid::now_v7());
        envelope.occurred_at_ms = ts_ms;
        set_moving(&mut self.hb, self.seq);
        self.seq += 1;
        &self.hb
    }

    /// The node's next heartbeat as the message an agent publishes on `subject`.
    pub fn next_message(&mut self, subject: String, ts_ms: i64) -> anyhow::Result<Outgoing> {
        Ok(Outgoing::event(subject, self.next(ts_ms))?)
    }
}

async fn connection(
    client: async_nats::Client,
    nodes: Vec<String>,
    rate: f64,
    duration: Duration,
    max_inflight: usize,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Published> {
    let js = async_nats::jetstream::new(client.clone());
    let mut out = Published::default();
    if nodes.is_empty() {
        return Ok(out);
    }
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut inflight = FuturesUnordered::new();
    let mut beats: Vec<Beats> = nodes.iter().map(|n| Beats::new(n)).collect();
    let tick = Duration::from_millis(5);
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            while inflight.len() >= max_inflight {
                match inflight.next().await {
                    Some(Ok(_)) => {
                        out.acked += 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) => out.errors += 1,
                    None => break,
                }
            }
            let i = (sent % nodes.len() as u64) as usize;
            let msg =
                beats[i].next_message(subjects::heartbeat(&nodes[i]), nerve_platform::now_ms())?;
            match msg.send(&js).await {
                Ok(ack) => inflight.push(ack.stored()),
                Err(_) => out.errors += 1,
            }
            sent += 1;
        }
        // Collect acks that are ready without waiting, then wait for the next tick.
        let deadline = tokio::time::Instant::now() + tick;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                r = inflight.next(), if !inflight.is_empty() => match r {
                    Some(Ok(_)) => {
                        out.acked += 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) => out.errors += 1,
                    None => {}
                },
            }
        }
    }
    while let Some(r) = inflight.next().await {
        match r {
            Ok(_) => {
                out.acked += 1;
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => out.errors += 1,
        }
    }
    client.flush().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `node_state` keeps per row: the simulated 8-GPU heartbeat as published is a small
    /// fraction of what its GPU samples took as JSON (the column it replaced).
    #[test]
    fn a_kept_heartbeat_is_a_fraction_of_its_gpus_as_json() {
        let hb = heartbeat("sim-000001", 7, 1_795_000_000_000);
        let avro = nerve_schemas::encode(&hb).expect("encode").len();
        let json = serde_json::to_string(&hb.gpus).expect("json").len();
        println!("8-GPU heartbeat: {avro} B as Avro, its GPU samples {json} B as JSON");
        assert!(avro * 4 < json, "{avro} B Avro vs {json} B JSON");
    }

    #[test]
    fn beats_refilled_in_place_equal_fresh_heartbeats_but_for_their_ids() {
        let mut beats = Beats::new("sim-000007");
        let mut ids = std::collections::HashSet::new();
        for seq in 0..200 {
            let ts = 1_800_000_000_000 + seq * 30_000;
            let beat = beats.next(ts).clone();
            let mut fresh = heartbeat("sim-000007", seq, ts);
            assert!(uuid::Uuid::parse_str(&beat.envelope.event_id).is_ok());
            assert!(ids.insert(beat.envelope.event_id.clone()), "ids are unique");
            fresh.envelope.event_id = beat.envelope.event_id.clone();
            assert_eq!(beat, fresh, "seq {seq}");
        }
    }
}
