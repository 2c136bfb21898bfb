//! `drill project-leader`: two `nerve project` processes (the `nerve` binary beside this tool,
//! or `--nerve-bin`) share the projectors and the singleton roles over one nats-server and
//! ClickHouse, while `--nodes` simulated nodes heartbeat every 30 s (the seed's fleet) and a hot
//! node keeps a CPU alert open. The one holding the singleton leases is killed (SIGKILL) at
//! `--fault-at-secs`: the drill's recovery is how long until the other holds every lease, and at
//! the end the open alert must have fired once and no simulated node have been judged suspect
//! or offline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use nerve_ingest::lease::LEASES_BUCKET;

use super::{DrillArgs, Topology};

/// The node whose CPU keeps the drill's alert open.
pub const HOT_NODE: &str = "hot-node";

/// The singleton roles whose leases move.
const ROLES: [&str; 2] = ["liveness", "alerts"];

/// What the drill checks beyond the heartbeats.
#[derive(Debug, serde::Serialize)]
pub struct LeaderChecks {
    pub lease_secs: u64,
    /// Firings of the alert that was open when the leader died (1: none twice).
    pub hot_alert_firings: u64,
    /// Liveness judgements of the simulated nodes (0: no false suspect or offline).
    pub fleet_judgements: u64,
}

/// The `nerve` binary: `--nerve-bin`, else beside this tool.
fn nerve_bin(args: &DrillArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.nerve_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this tool's directory")?
            .join("nerve"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it (cargo build --release -p nerve-cli) or pass --nerve-bin",
        path.display()
    );
    Ok(path)
}

/// Starts two `nerve project`s on `t`, the first holding every singleton before the second
/// starts; saves a CPU rule and waits until the hot node's alert fired. Returns the pid of the
/// leader.
pub async fn start(t: &mut Topology, args: &DrillArgs) -> anyhow::Result<u32> {
    let bin = nerve_bin(args)?;
    let dir = t.dir().to_owned();
    let secrets = dir.join("secrets.key");
    nerve_platform::secrets::Sealer::create_if_missing(&secrets)?;
    let seed = dir.join("dispatch.seed");
    nerve_ingest::offer::OfferSigner::load_or_create(&seed)?;
    let c = &t.config;
    let env: Vec<(String, String)> = vec![
        ("NERVE_NATS__URL".into(), c.nats.url.clone()),
        ("NERVE_CLICKHOUSE__URL".into(), c.clickhouse.url.clone()),
        (
            "NERVE_CLICKHOUSE__DATABASE".into(),
            c.clickhouse.database.clone(),
        ),
        (
            "NERVE_ALERTS__SECRETS_KEY_FILE".into(),
            secrets.display().to_string(),
        ),
        (
            "NERVE_DISPATCH__SIGNING_KEY_FILE".into(),
            seed.display().to_string(),
        ),
        ("NERVE_ALERTS__EVAL_INTERVAL_MS".into(), "1000".into()),
        (
            "NERVE_SINGLETONS__LEASE_SECS".into(),
            args.lease_secs.to_string(),
        ),
        ("NERVE_ARCHIVE__ENABLED".into(), "false".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let spawn = || {
        tokio::process::Command::new(&bin)
            .arg("project")
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nerve project")
    };
    let first = spawn()?;
    let pid = first.id().context("pid")?;
    t.projects.push(first);
    let client = nerve_ingest::connect(&c.nats, nerve_ingest::Who::Role("drill"), false).await?;
    let js = async_nats::jetstream::new(client.clone());
    let leases = until(Duration::from_secs(60), "the leases bucket", || async {
        js.get_key_value(LEASES_BUCKET).await.ok()
    })
    .await?;
    until(
        Duration::from_secs(60),
        "the first project leading",
        || async { (holders(&leases).await == [Some(pid); 2]).then_some(()) },
    )
    .await?;
    t.projects.push(spawn()?);
    t.leases = Some(leases);

    let ctx = nerve_alerts::Context::new(
        nerve_platform::clickhouse::client(&c.clickhouse),
        Some(client),
        &c.alerts,
    );
    let save = nerve_alerts::contract::SaveRule {
        name: "cpu-hot".into(),
        kind: "threshold".into(),
        metric: "cpu_pct".into(),
        op: Some(">".into()),
        threshold: Some(95.0),
        window_secs: Some(600),
        resolve_after_secs: Some(3600),
        ..Default::default()
    };
    nerve_alerts::rules::save(&ctx, None, save, "loadtest")
        .await
        .map_err(|e| anyhow::anyhow!("saving the rule: {e}"))?;
    // The hot node beats as the fleet does, every 30 s, for the whole drill.
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_secs(30));
        for seq in 0.. {
            beat.tick().await;
            let mut hb = crate::sim::heartbeat(HOT_NODE, seq, nerve_platform::now_ms());
            hb.cpu_pct = 99.0;
            let _ =
                nerve_ingest::publish(&js, nerve_schemas::subjects::heartbeat(HOT_NODE), &hb).await;
        }
    });
    let ch = nerve_platform::clickhouse::client(&c.clickhouse);
    until(Duration::from_secs(90), "the hot node's alert", || async {
        (firings(&ch).await.ok()? == 1).then_some(())
    })
    .await?;
    Ok(pid)
}

/// Each role's holder (the pid in `host-pid-started_ms`).
pub async fn holders(leases: &async_nats::jetstream::kv::Store) -> [Option<u32>; 2] {
    let mut out = [None; 2];
    for (slot, role) in out.iter_mut().zip(ROLES) {
        if let Ok(Some(value)) = leases.get(role).await {
            *slot = String::from_utf8_lossy(&value)
                .rsplit('-')
                .nth(1)
                .and_then(|p| p.parse().ok());
        }
    }
    out
}

async fn firings(ch: &clickhouse::Client) -> Result<u64, clickhouse::error::Error> {
    ch.query("SELECT count() FROM alert_log WHERE kind = 'AlertFired' AND node_id = ?")
        .bind(HOT_NODE)
        .fetch_one()
        .await
}

/// The checks at the end of the drill.
pub async fn checks(t: &Topology, args: &DrillArgs) -> anyhow::Result<LeaderChecks> {
    let ch = nerve_platform::clickhouse::client(&t.config.clickhouse);
    let judged: u64 = ch
        .query("SELECT count() FROM node_events WHERE liveness != '' AND node_id LIKE 'sim-%'")
        .fetch_one()
        .await?;
    Ok(LeaderChecks {
        lease_secs: args.lease_secs,
        hot_alert_firings: firings(&ch).await?,
        fleet_judgements: judged,
    })
}

/// Polls `check` every 100 ms until it answers, or fails naming `what` after `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
