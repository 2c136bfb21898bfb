//! The servers of a drill, each in its own directory: one nats-server or a JetStream cluster of
//! three, one ClickHouse server or the 2 × 2 cluster with ZooKeeper, the streams and tables
//! made, and for `project-leader` the `nerve project` processes.

use nerve_platform::config::{ClickHouseConfig, Config};
use nerve_platform::services::{
    ClickHouseCluster, ClickHouseServer, ClusterMember, NatsOptions, NatsServer,
};

/// The servers of one drill, each in its own directory.
pub struct Topology {
    pub config: Config,
    pub nats: Vec<NatsServer>,
    pub(super) clickhouse: Vec<ClickHouseServer>,
    _zookeeper: Option<nerve_platform::services::ZooKeeper>,
    /// The NATS server [`down`] killed.
    pub(super) killed_nats: Option<usize>,
    /// `nerve project` processes (`project-leader`), and the bucket of their leases.
    pub(super) projects: Vec<tokio::process::Child>,
    pub(super) leases: Option<async_nats::jetstream::kv::Store>,
    _dir: tempfile::TempDir,
}

impl Topology {
    /// `nats_servers` (1, or a JetStream cluster of 3 with R3 streams) and one ClickHouse
    /// server, or the 2 × 2 cluster.
    pub async fn start(nats_servers: usize, clickhouse_cluster: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("nerve-drill-").tempdir()?;
        let root = dir.path().to_owned();
        let (nats, clickhouse, zookeeper) = tokio::task::spawn_blocking(move || {
            let nats = start_nats(&root, nats_servers)?;
            let (ch, zk) = if clickhouse_cluster {
                let c = ClickHouseCluster::start(&root.join("clickhouse"))?;
                (c.servers, Some(c.zookeeper))
            } else {
                (
                    vec![ClickHouseServer::start(&root.join("clickhouse"), None)?],
                    None,
                )
            };
            anyhow::Ok((nats, ch, zk))
        })
        .await??;
        let mut config = Config::default();
        config.nats.url = join_urls(nats.iter().map(|s| s.url.as_str()));
        config.streams.replicas = nats_servers.min(3);
        config.clickhouse = ClickHouseConfig {
            url: join_urls(clickhouse.iter().map(|s| s.url.as_str())),
            database: format!("drill_{}", nerve_platform::now_ms()),
            cluster: if clickhouse_cluster {
                nerve_platform::services::clickhouse_cluster::CLUSTER.into()
            } else {
                String::new()
            },
            ..ClickHouseConfig::default()
        };
        config.projector.batch_max_events = 20_000;
        config.projector.batch_max_wait_ms = 200;
        let client =
            nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("loadtest"), false).await?;
        let js = async_nats::jetstream::new(client);
        nerve_ingest::ensure_streams(&js, &config.streams).await?;
        nerve_projections::ensure_tables(&config.clickhouse).await?;
        Ok(Self {
            config,
            nats,
            clickhouse,
            _zookeeper: zookeeper,
            killed_nats: None,
            projects: Vec::new(),
            leases: None,
            _dir: dir,
        })
    }

    /// Its private directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn stop(self) {
        let Self {
            nats,
            clickhouse,
            mut projects,
            ..
        } = self;
        for p in &mut projects {
            let _ = p.kill().await;
        }
        let _ = tokio::task::spawn_blocking(move || drop((nats, clickhouse))).await;
    }
}

fn join_urls<'a>(urls: impl Iterator<Item = &'a str>) -> String {
    urls.collect::<Vec<_>>().join(",")
}

/// One server, or a JetStream cluster of `n` named `n1`… routed on 127.0.0.1.
fn start_nats(root: &std::path::Path, n: usize) -> anyhow::Result<Vec<NatsServer>> {
    if n <= 1 {
        return Ok(vec![NatsServer::start(&root.join("nats"), None)?]);
    }
    let route_ports = (0..n)
        .map(|_| nerve_platform::services::free_port())
        .collect::<Result<Vec<u16>, _>>()?;
    (0..n)
        .map(|i| {
            let options = NatsOptions {
                cluster: Some(ClusterMember {
                    server_name: format!("n{}", i + 1),
                    cluster_name: "nerve".into(),
                    route_port: route_ports[i],
                    route_ports: route_ports.clone(),
                }),
                ..Default::default()
            };
            Ok(NatsServer::start_with(
                &root.join(format!("n{}", i + 1)),
                None,
                &options,
            )?)
        })
        .collect()
}
