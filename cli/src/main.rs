//! `nerve`: one binary for every role — `agent`, `ingest`, `project`, `serve`, and `dev` (all of
//! them on one machine, with NATS and ClickHouse as child processes) — plus `token`, `audit`, `replay` and `export`
//! for admins, and `config` and `probe` to check a config file and what the agent sees.

#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod dev;
#[cfg(feature = "server")]
mod export;
#[cfg(feature = "server")]
mod replay;
#[cfg(feature = "server")]
mod singletons;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use nerve_platform::config::Config;
use nerve_platform::metrics::Registry;
use tokio_util::sync::CancellationToken;

/// The control-plane roles allocate per event (Avro decoding, rows, JSON), where glibc malloc
/// costs a visible share of a projector's CPU; the lean agent build keeps the system allocator.
#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "nerve",
    version,
    about = "Control plane for fleets of compute nodes"
)]
struct Cli {
    /// Config file (TOML); every key can also be set as NERVE_<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "NERVE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where `nerve bridge` mirrors to.
#[cfg(feature = "kafka")]
#[derive(Debug, Subcommand)]
enum BridgeTarget {
    /// Kafka (`[bridge.kafka]`).
    Kafka {
        /// The brokers (bridge.kafka.brokers), e.g. kafka-1:9092,kafka-2:9092.
        #[arg(long)]
        brokers: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent: publish this machine's inventory and heartbeats.
    Agent {
        /// Enroll this node first with an enrollment token (from `nerve enrollment create`):
        /// its NATS key is made here, and the API issues credentials for it.
        #[arg(long, env = "NERVE_ENROLL_TOKEN")]
        enroll: Option<String>,
        /// The API to enroll with (agent.api_url), e.g. https://control:8080.
        #[arg(long)]
        api: Option<String>,
        /// The CA (PEM) of the API's certificate (agent.api_ca_file).
        #[arg(long)]
        api_ca_file: Option<PathBuf>,
    },
    /// Create or update the JetStream streams, then exit.
    Ingest,
    /// Run the projectors: fold the streams into ClickHouse.
    #[cfg(feature = "server")]
    Project {
        /// Test-only crash point (proves the write-then-ack protocol).
        #[arg(long, hide = true, value_enum)]
        failpoint: Option<FailpointArg>,
    },
    /// Serve the API and console.
    #[cfg(feature = "server")]
    Serve,
    /// Run everything on this machine: NATS, ClickHouse, projectors, API, console and an agent.
    #[cfg(feature = "server")]
    Dev,
    /// Operator tokens: create, list, rotate, revoke (through the API, with an admin token).
    #[cfg(feature = "server")]
    Token {
        #[command(flatten)]
        target: admin::ApiTarget,
        #[command(subcommand)]
        command: admin::TokenCommand,
    },
    /// Enrollment tokens for nodes and nodes' NATS credentials: create, list, revoke (through
    /// the API, with an admin token).
    #[cfg(feature = "server")]
    Enrollment {
        #[command(flatten)]
        target: admin::ApiTarget,
        #[command(subcommand)]
        command: admin::EnrollmentCommand,
    },
    /// Nodes' maintenance states: cordon, uncordon, mark for service, show, list (through the
    /// API, with an operator's or admin's token).
    #[cfg(feature = "server")]
    Node {
        #[command(flatten)]
        target: admin::ApiTarget,
        #[command(subcommand)]
        command: admin::NodeCommand,
    },
    /// The NATS authority of a deployment: `init` makes its keys, the server's config lines
    /// and each role's credentials.
    #[cfg(feature = "server")]
    Authority {
        #[command(subcommand)]
        command: admin::AuthorityCommand,
    },
    /// The keys every role shares: `init` makes the secrets key and the dispatch signing key.
    #[cfg(feature = "server")]
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Mirror the log into another system: `kafka` sends chosen streams to Kafka topics
    /// (`[bridge.kafka]`), at least once, acking each event after Kafka's delivery report.
    #[cfg(feature = "kafka")]
    Bridge {
        #[command(subcommand)]
        target: BridgeTarget,
    },
    /// Rebuild the read models from the log while the live projectors run (shadow tables,
    /// compared partition by partition, cut over atomically); `--check` only compares.
    #[cfg(feature = "server")]
    Replay(replay::ReplayArgs),
    /// Write the events published between two times (archive, then streams) as Avro files
    /// with a manifest and SHA-256 sums, for an audit.
    #[cfg(feature = "server")]
    Export(export::ExportArgs),
    /// The audit trail: `verify` checks every chain.
    #[cfg(feature = "server")]
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Seal a secret read from stdin with the secrets key file (`alerts.secrets_key_file`),
    /// e.g. the SMTP password: `nerve secret seal --context alerts.smtp.password`.
    #[cfg(feature = "server")]
    Secret {
        #[command(subcommand)]
        command: admin::SecretCommand,
    },
    /// Check a config file and print the effective configuration.
    Config,
    /// Print what the agent sees on this machine as JSON (NVML's readings of every GPU, the
    /// inventory event, a heartbeat event), then exit. Needs no NATS; writes nothing.
    Probe {
        /// Seconds between the two readings a heartbeat's rates come from.
        #[arg(long, default_value_t = 1)]
        interval_secs: u64,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FailpointArg {
    ExitAfterWrite,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    nerve_platform::telemetry::init();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config => {
            println!("{}", effective_config(&config)?);
            return Ok(());
        }
        Command::Probe { interval_secs } => {
            let probe =
                nerve_agent::probe::probe(&config.agent, Duration::from_secs(interval_secs))?;
            println!("{}", serde_json::to_string_pretty(&probe)?);
            return Ok(());
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Server-side rendering of the console's larger pages nests deeply (in debug builds
        // past tokio's 2 MiB default); stacks are virtual memory, touched only as used.
        .thread_stack_size(nerve_platform::WORKER_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let cancel = nerve_platform::shutdown::on_signal();
        let metrics = Registry::new();
        match cli.command {
            Command::Agent {
                enroll,
                api,
                api_ca_file,
            } => {
                let mut config = config;
                if let Some(token) = enroll {
                    config.agent.enroll_token = token;
                }
                if let Some(api) = api {
                    config.agent.api_url = api;
                }
                if let Some(ca) = api_ca_file {
                    config.agent.api_ca_file = ca;
                }
                metrics_listener(&config, &metrics, &cancel).await?;
                nerve_agent::run(&config.nats, &config.agent, &metrics, cancel).await?;
            }
            Command::Ingest => {
                let client =
                    nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("ingest"), false)
                        .await?;
                let js = async_nats::jetstream::new(client);
                nerve_ingest::ensure_streams(&js, &config.streams).await?;
                tracing::info!("streams are up to date");
            }
            #[cfg(feature = "server")]
            Command::Project { failpoint } => {
                let failpoint = failpoint.map(|FailpointArg::ExitAfterWrite| {
                    nerve_projections::Failpoint::ExitAfterWrite
                });
                metrics_listener(&config, &metrics, &cancel).await?;
                project(&config, &metrics, failpoint, cancel).await?;
            }
            #[cfg(feature = "server")]
            Command::Serve => serve(&config, &metrics, cancel).await?,
            #[cfg(feature = "server")]
            Command::Dev => dev::run(config, metrics, cancel).await?,
            #[cfg(feature = "server")]
            Command::Token { target, command } => admin::token(&config, &target, command).await?,
            #[cfg(feature = "server")]
            Command::Enrollment { target, command } => {
                admin::enrollment(&config, &target, command).await?
            }
            #[cfg(feature = "server")]
            Command::Node { target, command } => admin::node(&config, &target, command).await?,
            #[cfg(feature = "server")]
            Command::Audit { command } => admin::audit(&config, command).await?,
            #[cfg(feature = "server")]
            Command::Replay(args) => replay::run(&config, args).await?,
            #[cfg(feature = "server")]
            Command::Export(args) => export::run(&config, args).await?,
            #[cfg(feature = "server")]
            Command::Secret { command } => admin::secret(&config, command)?,
            #[cfg(feature = "server")]
            Command::Authority { command } => admin::authority(command)?,
            #[cfg(feature = "server")]
            Command::Keys { command } => admin::keys(command)?,
            #[cfg(feature = "kafka")]
            Command::Bridge {
                target: BridgeTarget::Kafka { brokers },
            } => {
                let mut kafka = config.bridge.kafka.clone();
                if let Some(brokers) = brokers {
                    kafka.brokers = brokers;
                }
                metrics_listener(&config, &metrics, &cancel).await?;
                let client =
                    nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("bridge"), false)
                        .await?;
                nerve_bridge::run(client, &kafka, &metrics, cancel).await?;
            }
            Command::Config | Command::Probe { .. } => {}
        }
        anyhow::Ok(())
    })
}

fn effective_config(config: &Config) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(config)?;
    // A secret is shown only sealed.
    for (section, key) in [("alerts", "smtp"), ("clickhouse", "")] {
        let field = if key.is_empty() {
            &mut value[section]
        } else {
            &mut value[section][key]
        };
        if let Some(password) = field.get_mut("password")
            && password
                .as_str()
                .is_some_and(|p| !p.is_empty() && !nerve_platform::secrets::is_sealed(p))
        {
            *password = serde_json::Value::from("<redacted>");
        }
    }
    if let Some(token) = value["agent"].get_mut("enroll_token")
        && token.as_str().is_some_and(|t| !t.is_empty())
    {
        *token = serde_json::Value::from("<redacted>");
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The `/metrics` listener of `nerve agent` and `nerve project`, when `metrics.listen_addr`
/// is set (a port that cannot be bound stops the role at start).
async fn metrics_listener(
    config: &Config,
    metrics: &Registry,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics.addr() {
        nerve_platform::metrics::serve(addr, metrics.clone(), cancel.clone())
            .await
            .with_context(|| format!("metrics.listen_addr {addr}"))?;
    }
    Ok(())
}

/// Streams, tables, then the projectors, the task dispatcher, retention and (unless configured
/// off) the singleton roles under their leases until `cancel`.
#[cfg(feature = "server")]
pub(crate) async fn project(
    config: &Config,
    metrics: &Registry,
    failpoint: Option<nerve_projections::Failpoint>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let client =
        nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("project"), false).await?;
    let js = async_nats::jetstream::new(client.clone());
    nerve_ingest::ensure_streams(&js, &config.streams).await?;
    // The evaluator reads tables from its first round.
    nerve_projections::ensure_tables(&config.clickhouse)
        .await
        .context("preparing ClickHouse tables")?;
    let singletons = singletons::spawn(config, &client, metrics, &cancel).await?;
    let retention = config.retention.enabled.then(|| {
        let (clickhouse, retention, metrics, cancel) = (
            config.clickhouse.clone(),
            config.retention.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            nerve_projections::retention::run(&clickhouse, &retention, &metrics, cancel).await
        })
    });
    let key_file = &config.dispatch.signing_key_file;
    let signer = nerve_ingest::offer::OfferSigner::load_or_create(key_file)
        .with_context(|| format!("the dispatch signing key {}", key_file.display()))?;
    tracing::info!(
        public_key = %signer.public_key(),
        "task offers are signed; agents pin this key (agent.dispatch_public_key)"
    );
    let dispatcher = {
        let (client, metrics, cancel) = (client.clone(), metrics.clone(), cancel.clone());
        let signer = std::sync::Arc::new(signer);
        tokio::spawn(async move { nerve_dispatch::run(client, &metrics, signer, cancel).await })
    };
    let projected = nerve_projections::run_all(
        js,
        config.clickhouse.clone(),
        config.projector.clone(),
        metrics.clone(),
        failpoint,
        cancel.clone(),
    )
    .await;
    // The singletons stop with the projectors, whichever way they ended.
    cancel.cancel();
    for handle in singletons {
        handle.await.context("a singleton role")?;
    }
    dispatcher.await.context("task dispatcher")??;
    if let Some(handle) = retention {
        handle.await.context("retention")?;
    }
    projected?;
    // Acks are buffered by the client: try to get them to the server before exiting (bounded:
    // unflushed acks only mean redelivery, which the projectors deduplicate).
    match tokio::time::timeout(std::time::Duration::from_secs(5), client.flush()).await {
        Ok(result) => result.context("flushing acks")?,
        Err(_) => tracing::warn!("acks not flushed within 5 s; those events will be redelivered"),
    }
    Ok(())
}

/// The API and console until `cancel`.
#[cfg(feature = "server")]
pub(crate) async fn serve(
    config: &Config,
    metrics: &Registry,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let nats = nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("serve"), true).await?;
    nerve_ingest::ensure_streams(&async_nats::jetstream::new(nats.clone()), &config.streams)
        .await?;
    nerve_projections::ensure_tables(&config.clickhouse)
        .await
        .context("preparing ClickHouse tables")?;
    let key_file = &config.alerts.secrets_key_file;
    if nerve_platform::secrets::Sealer::create_if_missing(key_file)? {
        tracing::info!(file = %key_file.display(), "secrets key created");
    }
    let mut api = config.api.clone();
    if api.agent_nats_url.is_empty() {
        api.agent_nats_url = config.nats.url.clone();
    }
    let state = nerve_api::AppState::new(
        nerve_platform::clickhouse::client(&config.clickhouse),
        Some(nats),
        api,
        config.alerts.clone(),
        metrics.clone(),
    );
    if !config.api.nats_authority_dir.as_os_str().is_empty() {
        let dispatch =
            nerve_ingest::offer::OfferSigner::load_or_create(&config.dispatch.signing_key_file)?;
        let trust = nerve_api::auth::enroll::NodeTrust::connect(
            &config.nats,
            &config.api.nats_authority_dir,
            dispatch.public_key(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("NATS authority: {e}"))?;
        state.set_trust(trust);
        state.keyring().ready().await;
        // The server's revocation list becomes the auth stream's, whatever it held before.
        nerve_api::auth::enroll::push_revocations(&state)
            .await
            .context("pushing the NATS account's revocations")?;
        tracing::info!("node enrollment is on");
    }
    let token_file = config.admin_token_file();
    if let Some(file) = nerve_api::auth::tokens::bootstrap(&state, &token_file)
        .await
        .context("issuing the first admin token")?
    {
        tracing::info!(file = %file.display(), "first admin token written");
        println!(
            "No admin token existed: one was written to {} (readable by you only).\n\
             Sign in to the console with it, or: nerve token list",
            file.display()
        );
    }
    let app = nerve_ui::server::app(state, &config.api.site_dir);
    let listener = tokio::net::TcpListener::bind(config.api.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen_addr))?;
    let addr = listener.local_addr()?;
    let (cert, key) = (&config.api.tls_cert_file, &config.api.tls_key_file);
    let tls = !cert.as_os_str().is_empty() || !key.as_os_str().is_empty();
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(%addr, scheme, "serving API and console");
    println!(
        "Nerve console: {scheme}://{addr}/ (sign in with a token)   API: {scheme}://{addr}/api/v1 (Authorization: Bearer <token>)"
    );
    if tls {
        nerve_api::serve_tls(listener, app, cancel, cert, key).await?;
    } else {
        nerve_api::serve(listener, app, cancel).await?;
    }
    Ok(())
}
