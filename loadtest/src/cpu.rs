//! CPU time of the processes under test, read from `/proc`: this process (load generator and
//! projectors), the private nats-server, and the private ClickHouse split into its background
//! merges (`BackgrProcPool` threads) and the rest (inserts and queries). Readings taken around a
//! phase give its CPU cost per event, the budget the raw limits and the end-to-end rate are
//! compared on. Linux only; a process whose `/proc` entry cannot be read counts as zero.

use std::path::Path;

/// The name ClickHouse gives its background merge threads (18.16 and later).
const MERGE_THREAD: &str = "BackgrProcPool";

/// The unit of `/proc/…/stat` times: the kernel's USER_HZ, fixed at 100 on x86-64 and arm64
/// (what `getconf CLK_TCK` prints).
const USER_HZ: f64 = 100.0;

/// Cumulative CPU seconds (user + system) at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Cpu {
    /// This process: the simulator, the projectors, the probes.
    pub loadtest_s: f64,
    pub nats_s: f64,
    /// All of ClickHouse, merges included.
    pub clickhouse_s: f64,
    /// ClickHouse's background merge threads alone.
    pub clickhouse_merges_s: f64,
}

impl Cpu {
    /// The CPU used between `earlier` and this reading.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            loadtest_s: self.loadtest_s - earlier.loadtest_s,
            nats_s: self.nats_s - earlier.nats_s,
            clickhouse_s: self.clickhouse_s - earlier.clickhouse_s,
            clickhouse_merges_s: self.clickhouse_merges_s - earlier.clickhouse_merges_s,
        }
    }

    /// This CPU spread over `events`, in microseconds each.
    pub fn per_event_us(&self, events: u64) -> CpuPerEvent {
        let us = |s: f64| s * 1e6 / events.max(1) as f64;
        CpuPerEvent {
            loadtest_us: us(self.loadtest_s),
            nats_us: us(self.nats_s),
            clickhouse_us: us(self.clickhouse_s),
            clickhouse_merges_us: us(self.clickhouse_merges_s),
            total_us: us(self.loadtest_s + self.nats_s + self.clickhouse_s),
        }
    }
}

/// CPU microseconds per event, by process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CpuPerEvent {
    pub loadtest_us: f64,
    pub nats_us: f64,
    pub clickhouse_us: f64,
    pub clickhouse_merges_us: f64,
    pub total_us: f64,
}

impl std::fmt::Display for CpuPerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} µs = nerve-loadtest {:.1} + nats-server {:.1} + ClickHouse {:.1} (merges {:.1})",
            self.total_us,
            self.loadtest_us,
            self.nats_us,
            self.clickhouse_us,
            self.clickhouse_merges_us
        )
    }
}

/// The processes to read.
#[derive(Debug, Clone, Copy)]
pub struct Processes {
    nats: Option<u32>,
    clickhouse: Option<u32>,
}

impl Processes {
    /// This process and the given servers (`None`: not ours to measure).
    pub fn new(nats: Option<u32>, clickhouse: Option<u32>) -> Self {
        Self { nats, clickhouse }
    }

    /// Reads every process's CPU time now.
    pub fn read(&self) -> Cpu {
        let secs = |ticks: Option<u64>| ticks.unwrap_or(0) as f64 / USER_HZ;
        let of = |pid: u32| stat_ticks(Path::new(&format!("/proc/{pid}/stat")));
        Cpu {
            loadtest_s: secs(stat_ticks(Path::new("/proc/self/stat"))),
            nats_s: secs(self.nats.and_then(of)),
            clickhouse_s: secs(self.clickhouse.and_then(of)),
            clickhouse_merges_s: secs(self.clickhouse.map(|p| threads_ticks(p, MERGE_THREAD))),
        }
    }
}

/// utime + stime of a `/proc/…/stat` file.
fn stat_ticks(path: &Path) -> Option<u64> {
    parse_stat(&std::fs::read_to_string(path).ok()?).map(|(_, ticks)| ticks)
}

/// The summed CPU ticks of a process's threads named `comm`.
fn threads_ticks(pid: u32, comm: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|text| {
            parse_stat(&text)
                .filter(|(name, _)| *name == comm)
                .map(|(_, ticks)| ticks)
        })
        .sum()
}

/// (comm, utime + stime) of a `/proc/…/stat` line. The name is in parentheses and may itself
/// hold spaces or parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    let mut fields = text.get(close + 1..)?.split_whitespace();
    // After the name: state (3), ppid … cmajflt (4–12), utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_awkward_names() {
        let line = "4242 (Backgr) Pool)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 1 0 \
                    100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(("Backgr) Pool)", 1290)));
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_is_read_and_costs_spread_over_events() {
        let p = Processes::new(None, None);
        let before = p.read();
        // Burn some CPU so the reading moves.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = p.read().since(&before);
        assert!(used.loadtest_s > 0.0, "{used:?}");
        assert_eq!((used.nats_s, used.clickhouse_s), (0.0, 0.0));
        let per = Cpu {
            loadtest_s: 1.0,
            nats_s: 2.0,
            clickhouse_s: 0.5,
            clickhouse_merges_s: 0.25,
        }
        .per_event_us(1_000_000);
        assert_eq!(
            (
                per.loadtest_us,
                per.nats_us,
                per.clickhouse_us,
                per.clickhouse_merges_us,
                per.total_us
            ),
            (1.0, 2.0, 0.5, 0.25, 3.5)
        );
    }
}
