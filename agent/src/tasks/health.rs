//! Health checks: tasks of kind `health`, each a verdict. The spec's `hook` names the check:
//!
//! - `gpu` (built in, needs nothing installed): every GPU this node has reported is still on
//!   the bus (the bus ids of its inventories are kept in `state_dir/gpus.seen`; `count=N` in
//!   `args` asks for N instead), no GPU's verdict is critical (uncorrected ECC errors, remapped
//!   or retired rows past NVIDIA's limits, a pending remap, temperature near shutdown), and
//!   every NVLink is up. Warnings make `warn`.
//! - `dcgm`: `dcgmi diag -r <level>` (`args`: `1`, `2` or `3`; DCGM's memory and compute
//!   tests); `unavailable` where DCGM is not installed.
//! - `hook:<name>`: the operator's executable `<name>` in the hooks directory, with `args`;
//!   exit 0 passes.
//!
//! The verdict is a `HealthCheckCompleted` event (shown with the node's events) and the task's
//! end: exit 0 for `pass` and `warn`, 1 for `fail`, 2 for `unavailable`, with the report as its
//! output, so a remediation ladder reads the outcome from the task ledger like any task's.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nerve_schemas::{
    HealthCheckCompleted, HealthCheckReason, TaskDispatched, TaskFinished, TaskOutputProduced,
    TaskStarted, subjects,
};
use tokio_util::sync::CancellationToken;

use super::{Reporter, Rules};
use crate::collectors::gpu::{GpuCollector, GpuSnapshot, XidLedger, sample_of};

/// Where the bus ids of every GPU the node has reported are kept.
const SEEN_FILE: &str = "gpus.seen";

/// A check's verdict and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `pass`, `warn`, `fail` or `unavailable`.
    pub verdict: &'static str,
    pub reasons: Vec<HealthCheckReason>,
}

fn reason(severity: &str, code: &str, message: String) -> HealthCheckReason {
    HealthCheckReason {
        severity: severity.to_owned(),
        code: code.to_owned(),
        message,
    }
}

impl Verdict {
    fn of(reasons: Vec<HealthCheckReason>) -> Self {
        let verdict = if reasons.iter().any(|r| r.severity == "critical") {
            "fail"
        } else if reasons.is_empty() {
            "pass"
        } else {
            "warn"
        };
        Self { verdict, reasons }
    }

    fn unavailable(message: String) -> Self {
        Self {
            verdict: "unavailable",
            reasons: vec![reason("critical", "unavailable", message)],
        }
    }

    /// The task's exit code for this verdict.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            "pass" | "warn" => 0,
            "fail" => 1,
            _ => 2,
        }
    }
}

/// Adds the bus ids of `gpus` to the node's seen set (called with every inventory).
pub fn remember_gpus(state_dir: &Path, bus_ids: impl IntoIterator<Item = String>) {
    let path = state_dir.join(SEEN_FILE);
    let mut seen = read_seen(state_dir);
    let before = seen.len();
    seen.extend(bus_ids.into_iter().filter(|b| !b.is_empty()));
    if seen.len() != before {
        let text: String = seen.iter().map(|b| format!("{b}\n")).collect();
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!(path = %path.display(), error = %e, "the GPUs seen not kept");
        }
    }
}

fn read_seen(state_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(state_dir.join(SEEN_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The built-in `gpu` check over what the backend reads now (`snapshots`), the bus ids seen
/// before, and an optional expected count.
pub fn gpu_check(
    snapshots: &[GpuSnapshot],
    seen: &BTreeSet<String>,
    count: Option<usize>,
) -> Verdict {
    let mut reasons = Vec::new();
    let present: BTreeSet<String> = snapshots
        .iter()
        .map(|s| s.pci_bus_id.to_ascii_lowercase())
        .collect();
    for bus in seen {
        if !present.contains(&bus.to_ascii_lowercase()) {
            reasons.push(reason(
                "critical",
                "gpu_missing",
                format!("GPU {bus} was reported before and is not on the bus now"),
            ));
        }
    }
    if let Some(n) = count
        && snapshots.len() != n
    {
        reasons.push(reason(
            "critical",
            "gpu_count",
            format!("{} GPUs on the bus, {n} expected", snapshots.len()),
        ));
    }
    let now = Instant::now();
    for s in snapshots {
        let sample = sample_of(s, &XidLedger::default().of(&s.uuid, now));
        for r in sample.health_reasons {
            reasons.push(reason(
                &r.severity,
                &r.code,
                format!("GPU {} ({}): {}", s.index, s.pci_bus_id, r.message),
            ));
        }
        if let (Some(active), Some(total)) = (s.nvlink_active, s.nvlink_total)
            && active < total
        {
            reasons.push(reason(
                "critical",
                "nvlink_down",
                format!("GPU {}: {active} of {total} NVLinks up", s.index),
            ));
        }
    }
    Verdict::of(reasons)
}

/// Runs the check `spec.hook` names.
async fn check(task: &TaskDispatched, rules: &Rules, state_dir: &Path) -> Verdict {
    let spec = &task.spec;
    let timeout = Duration::from_secs(rules.timeout_secs(spec));
    match spec.hook.as_str() {
        "gpu" => {
            let count = spec
                .args
                .iter()
                .find_map(|a| a.strip_prefix("count=").and_then(|n| n.parse().ok()));
            let seen = read_seen(state_dir);
            tokio::task::spawn_blocking(move || {
                match GpuCollector::new(true, XidLedger::default()).snapshots() {
                    Ok(snapshots) => gpu_check(&snapshots, &seen, count),
                    Err(e) => Verdict::of(vec![reason(
                        "critical",
                        "gpu_driver",
                        format!("the GPUs cannot be read: {e}"),
                    )]),
                }
            })
            .await
            .unwrap_or_else(|e| Verdict::unavailable(format!("the check panicked: {e}")))
        }
        "dcgm" => {
            let level = spec.args.first().map_or("1", String::as_str);
            if !matches!(level, "1" | "2" | "3") {
                return Verdict::unavailable(format!("dcgm: level {level:?} is not 1, 2 or 3"));
            }
            let Some(dcgmi) = crate::collectors::find_program("dcgmi", &[]) else {
                return Verdict::unavailable("dcgm: dcgmi is not installed on this node".into());
            };
            let args = ["diag", "-r", level];
            exit_verdict("dcgm", &dcgmi, &args, timeout).await
        }
        name => match name.strip_prefix("hook:") {
            Some(hook) if super::valid_hook_name(hook) => {
                let path = rules.hooks_dir.join(hook);
                if !path.is_file() {
                    return Verdict::unavailable(format!("no {} on this node", path.display()));
                }
                let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
                exit_verdict(hook, &path, &args, timeout).await
            }
            _ => Verdict::unavailable(format!("unknown check {name:?}: gpu, dcgm or hook:<name>")),
        },
    }
}

/// A program's verdict: exit 0 passes, anything else fails (its output's tail is the reason).
async fn exit_verdict(what: &str, program: &Path, args: &[&str], timeout: Duration) -> Verdict {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Verdict::of(vec![reason(
            "critical",
            "timeout",
            format!("{what}: no verdict within {} s", timeout.as_secs()),
        )]),
        Ok(Err(e)) => Verdict::unavailable(format!("{what}: cannot start: {e}")),
        Ok(Ok(out)) if out.status.success() => Verdict::of(Vec::new()),
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
            Verdict::of(vec![reason(
                "critical",
                "failed",
                format!("{what} failed ({}): {tail}", out.status),
            )])
        }
    }
}

/// Runs a health check task and reports it: started, the report as output, its end and the
/// verdict event.
pub(super) async fn run(
    reporter: &Reporter,
    task: &TaskDispatched,
    rules: &Rules,
    state_dir: &Path,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    reporter
        .send(&TaskStarted {
            envelope: reporter.envelope::<TaskStarted>(),
            task_id: task.task_id.clone(),
            pid: i64::from(std::process::id()),
        })
        .await;
    let verdict = tokio::select! {
        v = check(task, rules, state_dir) => v,
        _ = cancel.cancelled() => Verdict::unavailable("cancelled".into()),
    };
    let duration_ms = started.elapsed().as_millis().min(i64::MAX as u128) as i64;
    let report = serde_json::json!({
        "check": task.spec.hook,
        "verdict": verdict.verdict,
        "reasons": verdict.reasons,
    });
    let text = format!("{report:#}\n").into_bytes();
    let output_bytes = text.len() as i64;
    reporter
        .send(&TaskOutputProduced {
            envelope: reporter.envelope::<TaskOutputProduced>(),
            task_id: task.task_id.clone(),
            stream: "stdout".into(),
            seq: 0,
            data: text,
        })
        .await;
    reporter
        .send_on(
            subjects::health_check(&reporter.node_id),
            &HealthCheckCompleted {
                envelope: reporter.envelope::<HealthCheckCompleted>(),
                task_id: task.task_id.clone(),
                check: task.spec.hook.clone(),
                verdict: verdict.verdict.to_owned(),
                reasons: verdict.reasons.clone(),
                duration_ms,
            },
        )
        .await;
    reporter
        .send(&TaskFinished {
            exit_code: Some(verdict.exit_code()),
            duration_ms,
            output_bytes,
            ..super::finished(reporter, task, String::new())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, bus: &str) -> GpuSnapshot {
        GpuSnapshot {
            index,
            uuid: format!("GPU-{index}"),
            pci_bus_id: bus.into(),
            temperature_c: Some(50),
            temp_slowdown_c: Some(90),
            temp_shutdown_c: Some(95),
            ecc_uncorrected: Some(0),
            nvlink_active: Some(18),
            nvlink_total: Some(18),
            ..GpuSnapshot::default()
        }
    }

    #[test]
    fn the_gpu_check_finds_missing_gpus_bad_verdicts_and_links_down() {
        let seen: BTreeSet<String> = ["00000000:3B:00.0", "00000000:5E:00.0"]
            .map(String::from)
            .into();
        let both = [gpu(0, "00000000:3B:00.0"), gpu(1, "00000000:5E:00.0")];
        assert_eq!(gpu_check(&both, &seen, None).verdict, "pass");
        assert_eq!(gpu_check(&both, &seen, Some(2)).verdict, "pass");

        let one = gpu_check(&both[..1], &seen, None);
        assert_eq!(one.verdict, "fail");
        assert_eq!(one.reasons[0].code, "gpu_missing");
        assert!(one.reasons[0].message.contains("5E:00.0"));
        assert_eq!(
            gpu_check(&both, &seen, Some(8)).reasons[0].code,
            "gpu_count"
        );

        let mut sick = both.clone();
        sick[1].ecc_uncorrected = Some(3);
        sick[0].nvlink_active = Some(16);
        let v = gpu_check(&sick, &seen, None);
        let codes: Vec<&str> = v.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(v.verdict, "fail");
        assert_eq!(codes, ["nvlink_down", "ecc_uncorrected"]);
        assert_eq!(v.exit_code(), 1);

        let mut warm = both.clone();
        warm[0].ecc_corrected = Some(5000);
        assert_eq!(gpu_check(&warm, &seen, None).verdict, "warn");
        assert_eq!(Verdict::unavailable("x".into()).exit_code(), 2);
    }

    #[test]
    fn the_gpus_seen_are_remembered_across_inventories() {
        let dir = tempfile::tempdir().expect("tmp");
        remember_gpus(dir.path(), ["a".to_owned(), "b".to_owned()]);
        remember_gpus(dir.path(), ["b".to_owned(), String::new()]);
        assert_eq!(read_seen(dir.path()), ["a", "b"].map(String::from).into());
    }
}
