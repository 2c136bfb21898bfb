//! The system under test: private nats-server and ClickHouse (unless URLs are given), a fresh
//! database, streams and tables, and optionally the projectors running in this process.

use std::time::Duration;

use anyhow::Context as _;

use nerve_platform::config::{ClickHouseConfig, Config};
use nerve_platform::metrics::Registry;
use nerve_platform::services::{ClickHouseServer, NatsOptions, NatsServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Services {
    pub config: Config,
    pub js: async_nats::jetstream::Context,
    pub client: async_nats::Client,
    pub ch: clickhouse::Client,
    nats: Option<NatsServer>,
    clickhouse: Option<ClickHouseServer>,
    projectors: Option<JoinHandle<Result<(), nerve_projections::ProjectorError>>>,
    cancel: CancellationToken,
    _tmp: tempfile::TempDir,
}

/// Where to run; `None` URLs start private servers.
pub struct Target<'a> {
    pub nats_url: Option<&'a str>,
    pub clickhouse_url: Option<&'a str>,
    pub database: Option<&'a str>,
    pub batch_max_events: usize,
    pub batch_max_wait_ms: u64,
    /// Sign in to NATS with this `.creds` file (a server with auth on).
    pub nats_credentials: Option<std::path::PathBuf>,
    /// The CA of the NATS server's certificate (a server with TLS on).
    pub nats_tls_ca: Option<std::path::PathBuf>,
}

impl Target<'static> {
    /// Private servers and a fresh database, with the projector's batch limits.
    pub fn private(batch_max_events: usize, batch_max_wait_ms: u64) -> Self {
        Self {
            nats_url: None,
            clickhouse_url: None,
            database: None,
            batch_max_events,
            batch_max_wait_ms,
            nats_credentials: None,
            nats_tls_ca: None,
        }
    }
}

impl Services {
    pub async fn start(t: Target<'_>) -> anyhow::Result<Self> {
        Self::start_with(t, NatsOptions::default()).await
    }

    /// As [`Services::start`], with the private nats-server set up as `nats_options` say.
    pub async fn start_with(t: Target<'_>, nats_options: NatsOptions) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("nerve-loadtest-")
            .tempdir()?;
        let mut nats = None;
        let nats_url = match t.nats_url {
            Some(u) => u.to_owned(),
            None => {
                let dir = tmp.path().join("nats");
                let s = tokio::task::spawn_blocking(move || {
                    NatsServer::start_with(&dir, None, &nats_options)
                })
                .await??;
                let url = s.url.clone();
                nats = Some(s);
                url
            }
        };
        let mut clickhouse = None;
        let ch_url = match t.clickhouse_url {
            Some(u) => u.to_owned(),
            None => {
                let dir = tmp.path().join("clickhouse");
                let s = tokio::task::spawn_blocking(move || ClickHouseServer::start(&dir, None))
                    .await??;
                let url = s.url.clone();
                clickhouse = Some(s);
                url
            }
        };
        let mut config = Config::default();
        config.nats.url = nats_url;
        config.clickhouse = ClickHouseConfig {
            url: ch_url,
            database: t
                .database
                .map(str::to_owned)
                .unwrap_or_else(|| format!("loadtest_{}", nerve_platform::now_ms())),
            ..ClickHouseConfig::default()
        };
        config.nats.credentials_file = t.nats_credentials.clone();
        config.nats.tls_ca_file = t.nats_tls_ca.clone().unwrap_or_default();
        config.projector.batch_max_events = t.batch_max_events;
        config.projector.batch_max_wait_ms = t.batch_max_wait_ms;
        let client =
            nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("loadtest"), false).await?;
        let js = async_nats::jetstream::new(client.clone());
        nerve_ingest::ensure_streams(&js, &config.streams).await?;
        nerve_projections::ensure_tables(&config.clickhouse).await?;
        let ch = nerve_platform::clickhouse::client(&config.clickhouse);
        Ok(Self {
            config,
            js,
            client,
            ch,
            nats,
            clickhouse,
            projectors: None,
            cancel: CancellationToken::new(),
            _tmp: tmp,
        })
    }

    /// Where this run's private files live (servers' data, logs).
    pub fn dir(&self) -> &std::path::Path {
        self._tmp.path()
    }

    /// The private nats-server's process id.
    pub fn nats_pid(&self) -> Option<u32> {
        self.nats.as_ref().map(NatsServer::pid)
    }

    /// The private ClickHouse's process id.
    pub fn clickhouse_pid(&self) -> Option<u32> {
        self.clickhouse.as_ref().map(ClickHouseServer::pid)
    }

    /// Kills the private nats-server and starts it again on its port with its store.
    /// Blocking.
    pub fn restart_nats(&mut self) -> anyhow::Result<()> {
        let nats = self
            .nats
            .as_mut()
            .context("no private nats-server to restart")?;
        nats.kill();
        nats.restart()?;
        Ok(())
    }

    /// The CPU readers of this process and the private servers.
    pub fn cpu(&self) -> crate::cpu::Processes {
        crate::cpu::Processes::new(self.nats_pid(), self.clickhouse_pid())
    }

    /// Runs the projectors in this process.
    pub fn start_projectors(&mut self, metrics: &Registry) {
        self.projectors = Some(tokio::spawn(nerve_projections::run_all(
            self.js.clone(),
            self.config.clickhouse.clone(),
            self.config.projector.clone(),
            metrics.clone(),
            None,
            self.cancel.clone(),
        )));
    }

    /// Stops projectors, then the private servers.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        if let Some(p) = self.projectors.take() {
            p.await??;
        }
        self.client.flush().await?;
        let (ch, nats) = (self.clickhouse.take(), self.nats.take());
        tokio::task::spawn_blocking(move || {
            if let Some(mut s) = ch {
                s.stop(Duration::from_secs(30));
            }
            if let Some(mut s) = nats {
                s.stop(Duration::from_secs(10));
            }
        })
        .await?;
        Ok(())
    }
}

/// A token with `role` issued through the event log like any other (as an admin named
/// `loadtest`); an API instance started after reads it from the auth stream.
pub async fn issue_token(
    ch: &ClickHouseConfig,
    nats: &async_nats::Client,
    api: &nerve_platform::config::ApiConfig,
    role: &str,
) -> anyhow::Result<String> {
    let issuer = nerve_api::AppState::new(
        nerve_platform::clickhouse::client(ch),
        Some(nats.clone()),
        api.clone(),
        Default::default(),
        Registry::new(),
    );
    let by = nerve_api::dto::auth::Identity {
        token_id: "loadtest".into(),
        name: "loadtest".into(),
        role: nerve_api::dto::auth::Role::Admin,
    };
    let request = nerve_api::dto::auth::CreateToken {
        name: format!("loadtest-{role}"),
        role: role.into(),
        ttl_secs: None,
    };
    Ok(nerve_api::auth::tokens::issue(&issuer, &by, request)
        .await?
        .token)
}
