//! `nerve dev`: the whole system on one machine. Starts nats-server and ClickHouse as children
//! (data under `dev.data_dir`, kept across restarts) unless configured off — the API and NATS
//! over TLS with a local CA (`dev.tls`) —, then the projectors,
//! the API/console and an agent for this machine in one process. On SIGINT/SIGTERM it stops in
//! order: agent and API, projectors (finishing their batch and acks), then the children.

use std::time::Duration;

use anyhow::Context as _;
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
    if config.dev.start_nats {
        let dir = data.join("nats");
        let port = port_of(&config.nats.url)?;
        let options = NatsOptions {
            tls: local_tls
                .as_ref()
                .map(|t| (t.cert_file.clone(), t.key_file.clone())),
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
    // This machine's agent trusts this machine's dispatcher.
    if config.agent.dispatch_public_key.is_empty() {
        let signer =
            nerve_ingest::offer::OfferSigner::load_or_create(&config.dispatch.signing_key_file)?;
        config.agent.dispatch_public_key = signer.public_key();
    }

    let result = run_roles(&config, &metrics, cancel).await;

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

async fn run_roles(
    config: &Config,
    metrics: &Registry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Projectors stop last among the roles, so they drain what the agent sent before it stopped.
    let projector_cancel = CancellationToken::new();
    let front_cancel = cancel.child_token();
    let projecting = {
        let (config, metrics, c) = (config.clone(), metrics.clone(), projector_cancel.clone());
        spawn_role(&cancel, async move {
            crate::project(&config, &metrics, None, c).await
        })
    };
    let serving = {
        let (config, metrics, c) = (config.clone(), metrics.clone(), front_cancel.clone());
        spawn_role(
            &cancel,
            async move { crate::serve(&config, &metrics, c).await },
        )
    };
    let agent = config.dev.run_agent.then(|| {
        let (config, metrics, c) = (config.clone(), metrics.clone(), front_cancel.clone());
        spawn_role(&cancel, async move {
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
