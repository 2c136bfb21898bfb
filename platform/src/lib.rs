//! What every Nerve process shares: typed config, shutdown, tracing and metrics; behind features,
//! the ClickHouse client (`clickhouse`) and nats-server / ClickHouse as child processes
//! (`services`, for `nerve dev`, tests and load tests). The agent build enables neither.

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod config;
pub mod metrics;
#[cfg(feature = "services")]
pub mod services;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::Config;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
