//! `nerve dev`: the whole system on one machine. Starts nats-server and ClickHouse as children
//! (data under `dev.data_dir`, kept across restarts) unless configured off — the API and NATS
//! over TLS with a local CA (`dev.tls`), NATS with decentralized JWT auth (each role its own
//! user, the local agent enrolled like any node) —, then the projectors,
//! the API/console and an agent for this machine in one process. On SIGINT/SIGTERM it stops in
//! order: agent and API, projectors (finishing their batch and acks), then the children.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use nerve_ingest::authority::{Authority, Grant};
use nerve_platform::config::Config;
use nerve_platform::metrics::Registry;
use nerve_platform::services::{ClickHouseServer, ClickHouseUsers, NatsOptions, NatsServer};
use nerve_platform::tls::LocalTls;
use tokio_util::sync::CancellationToken;

fn port_of(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("{url} has no port"))
}

pub async fn run(
    mut config: Config,
    metrics: Registry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let data = config.dev.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    // TLS everywhere with a local CA, unless files were given.
    let local_tls = if config.dev.tls {
        Some(LocalTls::ensure(&data.join("tls"))?)
    } else {
        None
    };
    if let Some(tls) = &local_tls
        && config.api.tls_cert_file.as_os_str().is_empty()
    {
        config.api.tls_cert_file = tls.cert_file.clone();
        config.api.tls_key_file = tls.key_file.clone();
    }
    let mut nats = None;
    let mut roles = RoleCreds::default();
    if config.dev.start_nats {
        let dir = data.join("nats");
        let port = port_of(&config.nats.url)?;
        // Decentralized JWT auth: no anonymous client; each role and node has its own user.
        let authority_dir = data.join("nats-authority");
        let authority = Authority::load_or_create(&authority_dir)?;
        roles = RoleCreds::ensure(&authority, &authority_dir)?;
        if config.api.nats_authority_dir.as_os_str().is_empty() {
            config.api.nats_authority_dir = authority_dir.clone();
        }
        let options = NatsOptions {
            tls: local_tls
                .as_ref()
                .map(|t| (t.cert_file.clone(), t.key_file.clone())),
            auth: Some(authority.server_config(&dir.join("jwt"))?),
            ..NatsOptions::default()
        };
        if let Some(tls) = &local_tls {
            config.nats.tls_ca_file = tls.ca_file.clone();
        }
        let server =
            tokio::task::spawn_blocking(move || NatsServer::start_with(&dir, Some(port), &options))
                .await??;
        tracing::info!(url = %server.url, "nats-server started");
        config.nats.url = server.url.clone();
        nats = Some(server);
    }
    let mut clickhouse = None;
    if config.dev.start_clickhouse {
        let dir = data.join("clickhouse");
        let port = port_of(&config.clickhouse.url)?;
        // Nerve signs in with its own password; analysts get a read-only user.
        let given = config.clickhouse.user != "default" || !config.clickhouse.password.is_empty();
        let users = if given {
            None
        } else {
            let file = data.join("clickhouse.passwords");
            let users = ClickHouseUsers::load_or_create(&file)?;
            config.clickhouse.user = "nerve".into();
            config.clickhouse.password = users.nerve_password.clone();
            println!(
                "ClickHouse: Nerve signs in as `nerve`; analysts as `analyst` (read-only). Passwords: {}",
                file.display()
            );
            Some(users)
        };
        let server = tokio::task::spawn_blocking(move || {
            ClickHouseServer::start_with_users(&dir, Some(port), users.as_ref())
        })
        .await??;
        tracing::info!(url = %server.url, "ClickHouse started");
        if !given {
            println!(
                "SQL analytics (docs/analytics.md): clickhouse-client --port {} --user analyst \
             --password <analyst= in {}> --database {}",
                server.tcp_port,
                data.join("clickhouse.passwords").display(),
                config.clickhouse.database
            );
        }
        config.clickhouse.url = server.url.clone();
        clickhouse = Some(server);
    }
    if config.agent.state_dir == nerve_platform::config::AgentConfig::default().state_dir {
        config.agent.state_dir = data.join("agent");
    }
    let defaults = Config::default();
    if config.alerts.secrets_key_file == defaults.alerts.secrets_key_file {
        config.alerts.secrets_key_file = data.join("secrets.key");
    }
    if config.dispatch.signing_key_file == defaults.dispatch.signing_key_file {
        config.dispatch.signing_key_file = data.join("dispatch.seed");
    }
    if config.dev.archive {
        config.archive.enabled = true;
        if config.archive.dir == defaults.archive.dir {
            config.archive.dir = data.join("archive");
        }
    }
    write_tools_config(&config, &roles, &data.join("tools.toml"))?;
    // This machine's agent trusts this machine's dispatcher.
    if config.agent.dispatch_public_key.is_empty() {
        let signer =
            nerve_ingest::offer::OfferSigner::load_or_create(&config.dispatch.signing_key_file)?;
        config.agent.dispatch_public_key = signer.public_key();
    }

    let result = run_roles(&config, &roles, &metrics, cancel).await;

    tokio::task::spawn_blocking(move || {
        if let Some(mut ch) = clickhouse {
            ch.stop(Duration::from_secs(30));
        }
        if let Some(mut n) = nats {
            n.stop(Duration::from_secs(10));
        }
    })
    .await?;
    tracing::info!("dev stopped");
    result
}

/// The control-plane roles' NATS credentials (`nerve dev` starts NATS with auth on), and the
/// admin's for tools (`nerve audit verify`, `nerve ingest`).
#[derive(Debug, Default)]
struct RoleCreds {
    serve: Option<PathBuf>,
    project: Option<PathBuf>,
    admin: Option<PathBuf>,
}

impl RoleCreds {
    /// Writes each role's `.creds` in `dir` (mode 0600) unless it is there.
    fn ensure(authority: &Authority, dir: &Path) -> anyhow::Result<Self> {
        let write = |name: &str, grant: &Grant| -> anyhow::Result<PathBuf> {
            let path = dir.join(format!("{name}.creds"));
            if !path.exists() {
                nerve_ingest::keys::write_private(&path, &authority.role_creds(name, grant)?)?;
            }
            Ok(path)
        };
        Ok(Self {
            serve: Some(write("serve", &Grant::serve())?),
            project: Some(write("project", &Grant::project())?),
            admin: Some(write("admin", &Grant::all())?),
        })
    }
}

/// Writes the config admin tools use against this `nerve dev` (mode 0600: it holds the
/// ClickHouse password): `nerve --config <data_dir>/tools.toml replay | export | audit verify`.
fn write_tools_config(config: &Config, roles: &RoleCreds, path: &Path) -> anyhow::Result<()> {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let p = |p: &Path| q(&p.display().to_string());
    let mut text = format!(
        "# Written by `nerve dev` for admin tools: nerve --config {} replay\n[nats]\nurl = {}\n",
        path.display(),
        q(&config.nats.url)
    );
    if let Some(creds) = &roles.admin {
        text += &format!("credentials_file = {}\n", p(creds));
    }
    if !config.nats.tls_ca_file.as_os_str().is_empty() {
        text += &format!("tls_ca_file = {}\n", p(&config.nats.tls_ca_file));
    }
    let ch = &config.clickhouse;
    text += &format!(
        "\n[clickhouse]\nurl = {}\ndatabase = {}\nuser = {}\npassword = {}\n",
        q(&ch.url),
        q(&ch.database),
        q(&ch.user),
        q(&ch.password)
    );
    text += &format!(
        "\n[archive]\nenabled = {}\ndir = {}\n",
        config.archive.enabled,
        p(&config.archive.dir)
    );
    nerve_ingest::keys::write_private(path, &text)?;
    println!(
        "Admin tools (replay, export, audit verify): nerve --config {} <command>",
        path.display()
    );
    Ok(())
}

/// `config` signed in to NATS as `creds` (when set: NATS runs with auth on).
fn signed_in(config: &Config, creds: &Option<PathBuf>) -> Config {
    let mut config = config.clone();
    if let Some(creds) = creds
        && config.nats.credentials_file.is_none()
    {
        config.nats.credentials_file = Some(creds.clone());
    }
    config
}

/// An enrollment token for this machine's agent, from the API once it answers (with the admin
/// token `nerve serve` wrote), and where the agent reaches the API.
async fn enroll_local_agent(config: &mut Config, cancel: &CancellationToken) -> anyhow::Result<()> {
    let tls = !config.api.tls_cert_file.as_os_str().is_empty();
    let base = format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        config.api.listen_addr
    );
    let ca = config.dev.data_dir.join("tls/ca.pem");
    let mut client = reqwest::Client::builder();
    if tls && ca.exists() {
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?);
        config.agent.api_ca_file = ca;
    }
    let client = client.build()?;
    let file = config.admin_token_file();
    let mut wait = Duration::from_millis(100);
    let token = loop {
        let attempt = async {
            let admin = std::fs::read_to_string(&file)?;
            let response = client
                .post(format!("{base}/api/v1/enrollments"))
                .bearer_auth(admin.trim())
                .json(&serde_json::json!({"name": "nerve dev: this machine", "uses": 1, "ttl_secs": 600}))
                .send()
                .await?
                .error_for_status()?;
            let body: serde_json::Value = response.json().await?;
            body["token"]
                .as_str()
                .map(str::to_owned)
                .context("no token in the enrollment answer")
        };
        match attempt.await {
            Ok(token) => break token,
            Err(e) => tracing::debug!(error = %e, "API not ready for enrollment yet"),
        }
        tokio::select! {
            () = cancel.cancelled() => anyhow::bail!("stopped before the agent enrolled"),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    };
    config.agent.enroll_token = token;
    config.agent.api_url = base;
    Ok(())
}

async fn run_roles(
    config: &Config,
    roles: &RoleCreds,
    metrics: &Registry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Projectors stop last among the roles, so they drain what the agent sent before it stopped.
    let projector_cancel = CancellationToken::new();
    let front_cancel = cancel.child_token();
    let projecting = {
        let (config, metrics, c) = (
            signed_in(config, &roles.project),
            metrics.clone(),
            projector_cancel.clone(),
        );
        spawn_role(&cancel, async move {
            crate::project(&config, &metrics, None, c).await
        })
    };
    let serving = {
        let (config, metrics, c) = (
            signed_in(config, &roles.serve),
            metrics.clone(),
            front_cancel.clone(),
        );
        spawn_role(
            &cancel,
            async move { crate::serve(&config, &metrics, c).await },
        )
    };
    let agent = config.dev.run_agent.then(|| {
        let (mut config, metrics, c) = (config.clone(), metrics.clone(), front_cancel.clone());
        // With NATS auth on, this machine's agent enrolls like any node (once: its key and
        // credentials stay in its state dir).
        let enrolled = nerve_ingest::node_key::jwt_path(&config.agent.state_dir).exists();
        let enroll = roles.serve.is_some() && !enrolled;
        spawn_role(&cancel, async move {
            if enroll {
                enroll_local_agent(&mut config, &c).await?;
            }
            nerve_agent::run(&config.nats, &config.agent, &metrics, c)
                .await
                .context("agent")
        })
    });

    cancel.cancelled().await;
    front_cancel.cancel();
    let mut errors = Vec::new();
    if let Some(agent) = agent
        && let Err(e) = agent.await?
    {
        errors.push(e);
    }
    if let Err(e) = serving.await? {
        errors.push(e.context("serve"));
    }
    projector_cancel.cancel();
    if let Err(e) = projecting.await? {
        errors.push(e.context("projectors"));
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs one role; whenever it ends (a failure, e.g. the API port is taken) it stops all roles.
fn spawn_role(
    stop_all: &CancellationToken,
    role: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let stop_all = stop_all.clone();
    tokio::spawn(async move {
        let result = role.await;
        stop_all.cancel();
        result
    })
}
