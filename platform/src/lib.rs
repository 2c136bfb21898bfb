//! What every Nerve process shares: typed config, shutdown, tracing, metrics and sealed secrets
//! ([`secrets`]); behind features,
//! the ClickHouse client (`clickhouse`) and nats-server / ClickHouse as child processes
//! (`services`, for `nerve dev`, tests and load tests). The agent build enables neither.

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod config;
pub mod metrics;
pub mod secrets;
#[cfg(feature = "services")]
pub mod services;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "services")]
pub mod tls;

pub use config::Config;

/// Stack size of the async runtime's worker threads in every `nerve` process (and the tests
/// that serve the console): rendering the console's larger pages on the server nests deeply.
pub const WORKER_STACK_BYTES: usize = 8 << 20;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// This machine's host name (`nerve` where the kernel does not say).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "nerve".into())
}
