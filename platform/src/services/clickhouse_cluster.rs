//! A local replicated and sharded ClickHouse for the fault drills: one ZooKeeper (Debian's
//! `zookeeper`, what ClickHouse 18.16 coordinates replicas with) and the servers of
//! `infra/clickhouse/cluster/` — 2 shards × 2 replicas in the cluster `nerve` — each with its
//! own directory, every host moved to 127.0.0.1 on free ports.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ChildProcess, ClickHouseServer, ServiceError, check_bin, ensure_dir, free_port};

/// The cluster layout every server of a Nerve cluster gets in `config.d/`.
const CLUSTER_XML: &str = include_str!("../../../infra/clickhouse/cluster/cluster.xml");

/// Each server's own `config.d/` file (shard and replica macros), `ch1`… in order.
const MACROS_XML: [&str; 4] = [
    include_str!("../../../infra/clickhouse/cluster/macros/ch1.xml"),
    include_str!("../../../infra/clickhouse/cluster/macros/ch2.xml"),
    include_str!("../../../infra/clickhouse/cluster/macros/ch3.xml"),
    include_str!("../../../infra/clickhouse/cluster/macros/ch4.xml"),
];

/// The cluster's name in `remote_servers`.
pub const CLUSTER: &str = "nerve";

/// `$NERVE_ZOOKEEPER_CLASSPATH`, else where Debian's `zookeeper` package puts its jar.
fn zookeeper_classpath() -> String {
    std::env::var("NERVE_ZOOKEEPER_CLASSPATH")
        .unwrap_or_else(|_| "/usr/share/java/zookeeper.jar".into())
}

/// A standalone ZooKeeper server on a free loopback port.
#[derive(Debug)]
pub struct ZooKeeper {
    pub port: u16,
    _process: ChildProcess,
}

impl ZooKeeper {
    /// Starts one with its data under `dir`; returns once it serves clients (`srvr` tells its
    /// mode: ClickHouse 18.16 crashes when its first ZooKeeper session fails).
    pub fn start(dir: &Path) -> Result<Self, ServiceError> {
        let classpath = zookeeper_classpath();
        let jar = PathBuf::from(classpath.split(':').next().unwrap_or_default());
        check_bin("zookeeper", &jar, "NERVE_ZOOKEEPER_CLASSPATH")?;
        let data = dir.join("data");
        ensure_dir(&data)?;
        let port = free_port().map_err(|source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cfg = dir.join("zoo.cfg");
        let text = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n",
            data.display()
        );
        std::fs::write(&cfg, text).map_err(|source| ServiceError::Io {
            path: cfg.clone(),
            source,
        })?;
        let mut cmd = Command::new("java");
        cmd.args(["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-cp", &classpath])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .current_dir(dir);
        let mut process = ChildProcess::spawn("zookeeper", cmd, &dir.join("zookeeper.log"))?;
        process.wait_ready(&dir.join("zookeeper.log"), || {
            four_letter(port, b"srvr").is_some_and(|a| a.contains("Mode: standalone"))
        })?;
        Ok(Self {
            port,
            _process: process,
        })
    }
}

/// The four servers of the layout in `dir`, on fresh free ports, with ZooKeeper on `zk_port`.
fn start_servers(
    bin: &Path,
    dir: &Path,
    zk_port: u16,
) -> Result<Vec<ClickHouseServer>, ServiceError> {
    let port = || {
        free_port().map_err(|source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        })
    };
    // (http, tcp, interserver) per server, known before any starts: each names the others.
    let ports = MACROS_XML
        .iter()
        .map(|_| Ok((port()?, port()?, port()?)))
        .collect::<Result<Vec<_>, ServiceError>>()?;
    let mut layout = CLUSTER_XML.replace(
        "<node><host>zk1</host><port>2181</port></node>",
        &format!(
            "<node><host>127.0.0.1</host><port>{}</port></node>",
            zk_port
        ),
    );
    layout = layout
        .lines()
        .filter(|l| !l.contains("<host>zk2</host>") && !l.contains("<host>zk3</host>"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, (_, tcp, _)) in ports.iter().enumerate() {
        layout = layout.replace(
            &format!("<host>ch{}</host><port>9000</port>", i + 1),
            &format!("<host>127.0.0.1</host><port>{tcp}</port>"),
        );
    }
    let mut servers = Vec::new();
    for (i, (http, tcp, interserver)) in ports.iter().enumerate() {
        let name = format!("ch{}", i + 1);
        let own_layout = layout.replace(
            "<interserver_http_port>9009</interserver_http_port>",
            &format!("<interserver_http_port>{interserver}</interserver_http_port>"),
        );
        let macros = MACROS_XML[i].replace(
            &format!("<interserver_http_host>{name}</interserver_http_host>"),
            "<interserver_http_host>127.0.0.1</interserver_http_host>",
        );
        let config_d = [
            ("cluster.xml".to_owned(), own_layout),
            ("macros.xml".to_owned(), macros),
        ];
        servers.push(ClickHouseServer::start_on(
            bin,
            &dir.join(&name),
            (*http, *tcp),
            None,
            &config_d,
        )?);
    }
    Ok(servers)
}

/// ZooKeeper's answer to a four-letter command.
fn four_letter(port: u16, command: &[u8]) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(command).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// ZooKeeper and the four ClickHouse servers of `infra/clickhouse/cluster/`, `ch1`… in order
/// (shard 1: ch1, ch2; shard 2: ch3, ch4). Dropped: every process stopped.
#[derive(Debug)]
pub struct ClickHouseCluster {
    pub servers: Vec<ClickHouseServer>,
    pub zookeeper: ZooKeeper,
}

impl ClickHouseCluster {
    /// Starts everything under `dir`; blocking.
    pub fn start(dir: &Path) -> Result<Self, ServiceError> {
        let bin = super::clickhouse_server_bin();
        check_bin("clickhouse-server", &bin, "NERVE_CLICKHOUSE_SERVER_BIN")?;
        let dir = std::path::absolute(dir).map_err(|source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut attempt = 0;
        let zookeeper = loop {
            attempt += 1;
            let zk_dir = dir.join(format!("zookeeper-{attempt}"));
            ensure_dir(&zk_dir)?;
            match ZooKeeper::start(&zk_dir) {
                Ok(zk) => break zk,
                // Its free port taken meanwhile: another.
                Err(ServiceError::ExitedEarly { .. }) if attempt < 4 => continue,
                Err(e) => return Err(e),
            }
        };
        // Each server names the others' ports before any starts: a port taken meanwhile by
        // another process fails one server, and the whole set starts again on new ports.
        let mut attempt = 0;
        let servers = loop {
            attempt += 1;
            match start_servers(&bin, &dir.join(format!("try-{attempt}")), zookeeper.port) {
                Ok(servers) => break servers,
                Err(ServiceError::ExitedEarly { .. }) if attempt < 4 => continue,
                Err(e) => return Err(e),
            }
        };
        Ok(Self { servers, zookeeper })
    }

    /// Every server's URL, comma-separated (as `clickhouse.url` takes them).
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}
