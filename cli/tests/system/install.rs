//! The agent's installation as an operator runs it: `curl …/install.sh | sh -s -- --enroll`
//! against a real server, into a temporary root — the binary matches the served checksum, the
//! config and the 0600 token file are written, the units pass `systemd-analyze verify` — and the
//! installed binary, started as the unit starts it, enrolls and heartbeats. A binary whose
//! checksum does not match is not installed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use tokio_util::sync::CancellationToken;

use crate::enrollment::{enrollment, serve};
use crate::support::Env;

/// `sh -c script` with `args` as its positional parameters; (success, stdout + stderr).
async fn sh(script: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("sh");
    (out.status.success(), crate::support::said(&out))
}

async fn sha256(path: &Path) -> String {
    let (ok, out) = sh(
        "sha256sum \"$1\" | cut -d' ' -f1",
        &[&path.display().to_string()],
    )
    .await;
    assert!(ok, "{out}");
    out.trim().to_owned()
}

/// `systemd-analyze verify` of `units` (paths under `root`) against `root`, which gets a copy
/// of this machine's system units (the targets every unit is ordered against): (success,
/// what it said).
pub(crate) async fn verify_units(root: &Path, units: &[String]) -> (bool, String) {
    let lib = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&lib).expect("mkdir");
    let (ok, out) = sh(
        "cp -a /usr/lib/systemd/system \"$1/\"",
        &[&lib.display().to_string()],
    )
    .await;
    assert!(ok, "{out}");
    let out = tokio::process::Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .arg("verify")
        .args(units)
        .output()
        .await
        .expect("systemd-analyze");
    let said = crate::support::said(&out);
    (out.status.success() && said.trim().is_empty(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_script_installs_a_checked_binary_and_units_and_the_agent_enrolls() {
    let env = Env::start_secured().await;
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&nerve_platform::metrics::Registry::new(), &cancel);
    let mut api = env.config.api.clone();
    api.agent_binary = env!("CARGO_BIN_EXE_nerve").into();
    api.agent_nats_url = env.config.nats.url.clone();
    let served = serve(&env, api).await;
    let token = enrollment(&served, 1, 600).await;
    let root = tempfile::tempdir().expect("tmp");
    let root_s = root.path().display().to_string();

    let (ok, out) = sh(
        "curl -fsSL \"$1/install.sh\" | sh -s -- --root \"$2\" --enroll \"$3\"",
        &[&served.url, &root_s, &token],
    )
    .await;
    assert!(ok, "install.sh: {out}");

    // The binary: the configured one, byte for byte, as the served checksum says.
    let installed = root.path().join("usr/local/bin/nerve");
    let sum = sha256(&installed).await;
    assert_eq!(sum, sha256(Path::new(env!("CARGO_BIN_EXE_nerve"))).await);
    let served_sum = reqwest::get(format!("{}/download/nerve.sha256", served.url))
        .await
        .expect("checksum")
        .text()
        .await
        .expect("text");
    assert_eq!(served_sum, format!("{sum}  nerve\n"));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&installed), 0o755);

    // The config names this deployment; the token is readable by root only.
    let etc = root.path().join("etc/nerve");
    let config =
        nerve_platform::Config::load_with_env(Some(&etc.join("agent.toml")), std::iter::empty())
            .expect("agent.toml");
    assert_eq!(config.nats.url, env.config.nats.url);
    assert_eq!(config.agent.api_url, served.url);
    let env_file = etc.join("agent.env");
    assert_eq!(mode(&env_file), 0o600);
    let token_line = std::fs::read_to_string(&env_file).expect("agent.env");
    assert_eq!(token_line, format!("NERVE_AGENT__ENROLL_TOKEN={token}\n"));

    // The units as installed pass systemd's own check (the binary is where they run it).
    let units = ["nerve-agent.service", "nerve-tasks.slice"].map(|u| {
        root.path()
            .join("etc/systemd/system")
            .join(u)
            .display()
            .to_string()
    });
    let (ok, said) = verify_units(root.path(), &units).await;
    assert!(ok, "systemd-analyze verify: {said}");

    // The installed binary, started as the unit starts it (its config, its token file), enrolls
    // and heartbeats with its own credentials.
    let (key, value) = token_line.trim().split_once('=').expect("KEY=value");
    let mut agent = tokio::process::Command::new(&installed);
    nerve_platform::services::die_with_parent(&mut agent);
    let _agent = agent
        .arg("--config")
        .arg(etc.join("agent.toml"))
        .arg("agent")
        .env(key, value)
        .env("NERVE_AGENT__STATE_DIR", env.state_dir.path().join("agent"))
        .env("NERVE_AGENT__HEARTBEAT_INTERVAL_SECS", "1")
        .env("NERVE_AGENT__TASK_SCOPE", "none")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the installed agent");
    let node = env
        .agent_node_with_heartbeats(2, "the installed agent's heartbeats")
        .await;
    let enrolled = nerve_api::auth::enroll::credentials(&served.state)
        .into_iter()
        .find(|c| c.node_id == node)
        .map(|c| c.state);
    assert_eq!(enrolled.as_deref(), Some("active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_does_not_match_its_checksum_is_not_installed() {
    // A server whose checksum names other bytes (a corrupted or swapped download).
    let app = axum::Router::new()
        .route(
            "/download/nerve",
            axum::routing::get(|| async { "#!/bin/sh\necho not nerve\n" }),
        )
        .route(
            "/download/nerve.sha256",
            axum::routing::get(|| async { format!("{}  nerve\n", "0".repeat(64)) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let script = nerve_api::http::install_script(&url, "nats://127.0.0.1:4222");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("install.sh");
    std::fs::write(&path, script).expect("write");
    let root = dir.path().join("root");
    let (ok, out) = sh(
        "sh \"$1\" --root \"$2\"",
        &[&path.display().to_string(), &root.display().to_string()],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(!root.join("usr/local/bin/nerve").exists());
}
