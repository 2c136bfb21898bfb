//! `nerve probe`: one look at this machine as the agent sees it — the raw NVML readings, the
//! inventory event and a heartbeat event — with no NATS and nothing written. For an operator
//! checking a node ("does the agent see all eight GPUs?") and for recording test fixtures.

use std::time::Duration;

use nerve_platform::config::AgentConfig;
use nerve_schemas::{Envelope, HeartbeatRecorded, InventoryReported};
use serde::{Deserialize, Serialize};

use crate::collectors::{self, Collectors};

/// What the probe saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub nvml: NvmlProbe,
    /// The inventory event the agent would publish now.
    pub inventory: InventoryReported,
    /// A heartbeat over the probe's interval (rates need two readings).
    pub heartbeat: HeartbeatRecorded,
}

/// NVML's readings before they become records; `error` when the driver is present but failing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NvmlProbe {
    pub snapshots: Vec<collectors::gpu::GpuSnapshot>,
    pub error: Option<String>,
}

/// Reads everything once, waits `interval`, and samples again for the heartbeat. The events
/// carry this node's id when the agent has run here, else `probe`. Blocks.
pub fn probe(config: &AgentConfig, interval: Duration) -> Result<Probe, crate::AgentError> {
    let node_id = crate::node_id::load(&config.state_dir)?.unwrap_or_else(|| "probe".into());
    let paths = collectors::fingerprint::HostPaths {
        procfs: config.procfs_path.clone(),
        sysfs: config.sysfs_path.clone(),
        rootfs: config.rootfs_path.clone(),
    };
    let mut collectors = Collectors::new(config.gpu, paths, Default::default());
    let inventory = collectors.inventory(true);
    let (snapshots, error) = match collectors.nvml_snapshots() {
        Ok(s) => (s, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let _ = collectors.sample();
    std::thread::sleep(interval);
    let sample = collectors.sample();
    let now = nerve_platform::now_ms();
    Ok(Probe {
        nvml: NvmlProbe { snapshots, error },
        inventory: InventoryReported {
            envelope: Envelope::new::<InventoryReported>(&node_id, now),
            ..inventory
        },
        heartbeat: HeartbeatRecorded {
            envelope: Envelope::new::<HeartbeatRecorded>(&node_id, now),
            seq: 0,
            interval_secs: interval.as_secs().clamp(1, i32::MAX as u64) as i32,
            ..sample
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe reads this machine for real: CPUs and memory are there, the events encode
    /// under the released schemas, and the GPUs are NVML's (none here without a driver; on a
    /// GPU machine every GPU it reads is in both events).
    #[test]
    fn probe_reads_this_machine_into_publishable_events() {
        let state = tempfile::tempdir().expect("tmp");
        let config = AgentConfig {
            state_dir: state.path().to_owned(),
            ..AgentConfig::default()
        };
        let p = probe(&config, Duration::from_millis(200)).expect("probe");
        assert_eq!(p.inventory.envelope.node_id, "probe");
        assert!(p.inventory.cpu.logical_cores > 0, "{:?}", p.inventory.cpu);
        assert!(p.heartbeat.mem_total_bytes > 0);
        assert_eq!(p.nvml.error, None);
        let nvml: Vec<&str> = p.nvml.snapshots.iter().map(|s| s.uuid.as_str()).collect();
        let listed: Vec<&str> = p.inventory.gpus.iter().map(|g| g.uuid.as_str()).collect();
        let sampled: Vec<&str> = p.heartbeat.gpus.iter().map(|g| g.uuid.as_str()).collect();
        assert_eq!((&listed, &sampled), (&nvml, &nvml));
        nerve_schemas::encode(&p.inventory).expect("inventory encodes");
        nerve_schemas::encode(&p.heartbeat).expect("heartbeat encodes");

        std::fs::write(state.path().join("node_id"), "node-7\n").expect("write id");
        let p = probe(&config, Duration::ZERO).expect("probe");
        assert_eq!(p.heartbeat.envelope.node_id, "node-7");
    }
}
