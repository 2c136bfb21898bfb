//! Test harness over real services: a private nats-server per test (free port, own store, killed
//! on drop) and one private ClickHouse per test process with a fresh database per test, so tests
//! run in parallel. `NERVE_TEST_CLICKHOUSE_URL` points the tests at an existing server instead.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::ClickHouseConfig;
use crate::services::{ClickHouseServer, NatsServer};

/// A nats-server with JetStream for one test.
#[derive(Debug)]
pub struct TestNats {
    pub server: NatsServer,
    /// The other servers of a cluster ([`TestNats::cluster`]); empty for one server.
    pub peers: Vec<NatsServer>,
    dir: tempfile::TempDir,
}

impl TestNats {
    /// Starts one; panics with the reason (a test cannot go on without it).
    pub fn start() -> Self {
        Self::start_with(|_| crate::services::NatsOptions::default())
    }

    /// Starts one set up by `options` (given the server's private directory).
    pub fn start_with(
        options: impl FnOnce(&std::path::Path) -> crate::services::NatsOptions,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nerve-test-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let options = options(dir.path());
        let server =
            NatsServer::start_with(dir.path(), None, &options).unwrap_or_else(|e| panic!("{e}"));
        Self {
            server,
            peers: Vec::new(),
            dir,
        }
    }

    /// A JetStream cluster of `n` servers named `n1`… on 127.0.0.1 (as `infra/nats/cluster/`
    /// sets one up), each in its own directory; returns once every server listens (the
    /// cluster forms on its own: streams wait for their quorum).
    pub fn cluster(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nerve-test-nats-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let route_ports: Vec<u16> = (0..n)
            .map(|_| crate::services::free_port().unwrap_or_else(|e| panic!("port: {e}")))
            .collect();
        let mut servers: Vec<NatsServer> = route_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let options = crate::services::NatsOptions {
                    cluster: Some(crate::services::ClusterMember {
                        server_name: format!("n{}", i + 1),
                        cluster_name: "nerve".into(),
                        route_port: *port,
                        route_ports: route_ports.clone(),
                    }),
                    ..Default::default()
                };
                let server_dir = dir.path().join(format!("n{}", i + 1));
                NatsServer::start_with(&server_dir, None, &options)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let server = servers.remove(0);
        Self {
            server,
            peers: servers,
            dir,
        }
    }

    /// Every server's URL, comma-separated (as `nats.url` takes them).
    pub fn url(&self) -> String {
        std::iter::once(&self.server)
            .chain(&self.peers)
            .map(|s| s.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server named `name` (`n1`…) of a cluster.
    pub fn named(&mut self, name: &str) -> Option<&mut NatsServer> {
        let i: usize = name.strip_prefix('n')?.parse().ok()?;
        match i {
            1 => Some(&mut self.server),
            i => self.peers.get_mut(i.checked_sub(2)?),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

/// The 2 × 2 ClickHouse cluster of `infra/clickhouse/cluster/` with its ZooKeeper, private to
/// one test (a fault drill kills and restarts its servers).
#[derive(Debug)]
pub struct TestClickHouseCluster {
    pub cluster: crate::services::ClickHouseCluster,
    _dir: tempfile::TempDir,
}

impl TestClickHouseCluster {
    /// Starts it (seconds: ZooKeeper, then four servers); panics with the reason.
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(|| {
            let dir = tempfile::Builder::new()
                .prefix("nerve-test-clickhouse-cluster-")
                .tempdir()
                .unwrap_or_else(|e| panic!("temp dir: {e}"));
            let cluster = crate::services::ClickHouseCluster::start(dir.path())
                .unwrap_or_else(|e| panic!("{e}"));
            Self { cluster, _dir: dir }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A config for a fresh database on the cluster: every server's URL, `cluster` set.
    pub fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.cluster.url(),
            database: format!("t_{}", uuid::Uuid::now_v7().simple()),
            cluster: crate::services::clickhouse_cluster::CLUSTER.into(),
            ..ClickHouseConfig::default()
        }
    }
}

struct SharedClickHouse {
    url: String,
    _server: Option<ClickHouseServer>,
}

/// The process's ClickHouse; started on first use and stopped when the process exits.
fn shared_clickhouse() -> &'static SharedClickHouse {
    static SHARED: OnceLock<SharedClickHouse> = OnceLock::new();
    SHARED.get_or_init(|| {
        if let Ok(url) = std::env::var("NERVE_TEST_CLICKHOUSE_URL") {
            return SharedClickHouse { url, _server: None };
        }
        let root = std::env::temp_dir().join("nerve-test-clickhouse");
        remove_stale_dirs(&root);
        let dir = root.join(std::process::id().to_string());
        let server = ClickHouseServer::start(&dir, None).unwrap_or_else(|e| panic!("{e}"));
        SharedClickHouse {
            url: server.url.clone(),
            _server: Some(server),
        }
    })
}

/// Removes data dirs of earlier test processes that are gone (named by their pid).
fn remove_stale_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty database on the shared test ClickHouse.
pub async fn fresh_database() -> ClickHouseConfig {
    let url = tokio::task::spawn_blocking(|| shared_clickhouse().url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = ClickHouseConfig {
        url,
        database: format!("t_{}", uuid::Uuid::now_v7().simple()),
        ..ClickHouseConfig::default()
    };
    crate::clickhouse::ensure_database(&config)
        .await
        .unwrap_or_else(|e| panic!("create test database: {e}"));
    config
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
