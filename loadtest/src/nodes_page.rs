//! `nerve-loadtest nodes-page`: fills a private system with N simulated nodes (one inventory
//! report and one heartbeat each, every 6th one offline, in ten clusters, with rack and zone
//! labels) and measures the server side of the fleet list — the `/api/v1/nodes` queries and the
//! server-rendered `/nodes` page — for typical operator views: first page, a deep page, search,
//! status filter, cluster and label filters, sort by CPU — and, over an hour of generated
//! heartbeat history and 30 days of inventory reports and liveness changes
//! ([`crate::history`]), the fleet summary and node detail as they were at a past time.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nerve_ingest::Outgoing;
use nerve_platform::metrics::Registry;

use crate::services::{Services, Target};
use nerve_projections::control::{CLUSTER_MEMBERS, NODE_LABELS};
use nerve_projections::heartbeats::NODE_STATE;
use nerve_projections::inventory::INVENTORY;
use nerve_projections::node_events::NODE_LIVENESS;

#[derive(Debug, Clone, Args)]
pub struct NodesPageArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u32,
    /// Requests per view.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Hours of heartbeat history generated before the point-in-time views' times.
    #[arg(long, default_value_t = 1)]
    pub history_hours: u64,
    /// Seconds between the generated heartbeats (the agent's default).
    #[arg(long, default_value_t = 10)]
    pub history_interval_secs: u64,
    /// Requests per point-in-time view (`?at=`).
    #[arg(long, default_value_t = 20)]
    pub as_of_requests: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Latency of one view.
#[derive(Debug, serde::Serialize)]
pub struct ViewTiming {
    pub view: String,
    pub path: String,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn run(args: NodesPageArgs) -> anyhow::Result<()> {
    let mut services = Services::start(Target::private(20_000, 200)).await?;
    let metrics = Registry::new();
    services.start_projectors(&metrics);

    let started = Instant::now();
    fill(&services, args.nodes).await?;
    let n = u64::from(args.nodes);
    eprintln!(
        "nodes-page: {n} nodes projected in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let end = nerve_platform::now_ms().max(0) as u64;
    let started = Instant::now();
    let rows = crate::history::fill(
        &services.ch,
        args.nodes,
        end,
        args.history_hours,
        args.history_interval_secs.max(1),
    )
    .await?;
    eprintln!(
        "nodes-page: {rows} history rows generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let disk = disk_per_node_day(&services.ch, n, args.history_hours).await?;

    let token = crate::services::issue_token(
        &services.config.clickhouse,
        &services.client,
        &services.config.api,
        "viewer",
    )
    .await?;
    let state = nerve_api::AppState::new(
        services.ch.clone(),
        Some(services.client.clone()),
        services.config.api.clone(),
        services.config.alerts.clone(),
        metrics,
    );
    // Serve once the tokens are loaded, as `nerve serve` does.
    state.keyring().ready().await;
    let site = tempfile::tempdir()?; // no bundle needed: this measures the server side
    let app = nerve_ui::server::app(state, site.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(nerve_api::serve(listener, app, stop.clone()));

    let deep = (n / 2 / 50) * 50;
    let views = [
        ("API first page", "/api/v1/nodes?limit=50".to_string()),
        (
            "API deep page",
            format!("/api/v1/nodes?limit=50&offset={deep}"),
        ),
        (
            "API search",
            "/api/v1/nodes?limit=50&q=host-0042".to_string(),
        ),
        (
            "API offline filter",
            "/api/v1/nodes?limit=50&status=offline".to_string(),
        ),
        (
            "API sort by CPU desc",
            "/api/v1/nodes?limit=50&sort=cpu&order=desc".to_string(),
        ),
        (
            "API cluster filter",
            "/api/v1/nodes?limit=50&cluster=pool-3".to_string(),
        ),
        (
            "API label filter",
            format!(
                "/api/v1/nodes?limit=50&label=rack%3Dr{}",
                n / 2 / RACK_SIZE as u64
            ),
        ),
        ("API dashboard summary", "/api/v1/fleet/summary".to_string()),
        ("API node detail", format!("/api/v1/nodes/sim-{:06}", n / 3)),
        ("Page /nodes", "/nodes".to_string()),
        (
            "Page /nodes search+sort",
            "/nodes?q=host-0042&sort=cpu&order=desc".to_string(),
        ),
        (
            "Page /nodes deep page",
            format!("/nodes?page={}", deep / 50 + 1),
        ),
    ];
    let at = nerve_api::time::rfc3339_exact;
    let half_hour_ago = end - 30 * 60_000;
    let as_of = [
        (
            "API summary ?at=now",
            format!("/api/v1/fleet/summary?at={}", at(end)),
        ),
        (
            "API summary ?at=-30min",
            format!("/api/v1/fleet/summary?at={}", at(half_hour_ago)),
        ),
        (
            "API node detail ?at=-30m",
            format!("/api/v1/nodes/sim-{:06}?at={}", n / 3, at(half_hour_ago)),
        ),
        // The console's 30-day chart: 120 points of 6 h from the hourly roll-up.
        (
            "API 30-day chart (1h)",
            format!(
                "/api/v1/nodes/sim-{:06}/metrics?from={}&to={}&step=21600",
                n / 3,
                end / 1000 - 30 * 86_400,
                end / 1000
            ),
        ),
    ];
    let views = views
        .into_iter()
        .map(|(view, path)| (view, path, args.requests))
        .chain(as_of.into_iter().map(|(v, p)| (v, p, args.as_of_requests)));
    // The API takes the token as a bearer, the console's pages as the session cookie.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    headers.insert(
        reqwest::header::COOKIE,
        format!("{}={token}", nerve_api::http::guard::SESSION_COOKIE).parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut timings = Vec::new();
    for (view, path, requests) in views {
        let url = format!("{base}{path}");
        // Warm up once (connection, first query compile).
        fetch(&http, &url).await?;
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            fetch(&http, &url).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
        timings.push(ViewTiming {
            view: view.to_owned(),
            path,
            requests,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        });
    }
    println!(
        "{n} nodes, {} sequential requests per view ({} per ?at= view)",
        args.requests, args.as_of_requests
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9}",
        "view", "p50 ms", "p99 ms", "max ms"
    );
    for t in &timings {
        println!(
            "{:<26} {:>9.1} {:>9.1} {:>9.1}",
            t.view, t.p50_ms, t.p99_ms, t.max_ms
        );
    }
    println!("\ndisk per node per day (compressed, after merges)");
    for (table, bytes) in &disk {
        println!("{table:<26} {bytes:>9.0} bytes");
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&timings)?)?;
    }
    stop.cancel();
    server.await??;
    services.stop().await
}

/// Publishes [`publish_fleet`], waits until the projectors stored every node, then merges the
/// current-state tables as background merges would in a running system.
pub(crate) async fn fill(services: &Services, nodes: u32) -> anyhow::Result<()> {
    publish_fleet(&services.js, nodes).await?;
    let n = u64::from(nodes);
    let count = |sql: &str| {
        let query = services.ch.query(sql);
        async move { query.fetch_one::<u64>().await }
    };
    while count(&format!("SELECT count() FROM {NODE_STATE}")).await? < n
        || count(&format!("SELECT count() FROM {INVENTORY}")).await? < n
        || count(&format!("SELECT count() FROM {NODE_LIVENESS}")).await? < n.div_ceil(6)
        || count(&format!("SELECT count() FROM {CLUSTER_MEMBERS}")).await? < n
        || count(&format!("SELECT count() FROM {NODE_LABELS}")).await? < n
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for table in ["node_state", "inventory", "cluster_members", "node_labels"] {
        services
            .ch
            .query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await?;
    }
    Ok(())
}

/// Compressed bytes on disk per node per day of the time-series tables (roll-ups merged) of
/// what was generated ([`crate::history`]: `hours` of heartbeats and their roll-ups, 30 days of
/// hourly roll-ups and inventory reports).
async fn disk_per_node_day(
    ch: &clickhouse::Client,
    nodes: u64,
    hours: u64,
) -> anyhow::Result<Vec<(String, f64)>> {
    let days = [
        ("heartbeats", hours as f64 / 24.0),
        ("heartbeats_1m", hours as f64 / 24.0),
        (
            "heartbeats_1h",
            crate::history::DAYS as f64 + hours as f64 / 24.0,
        ),
        ("inventory_log", crate::history::DAYS as f64),
    ];
    let mut out = Vec::new();
    for (table, days) in days {
        // A roll-up's rows are summed by merges: measure them merged. The others are written
        // in large parts already.
        if table.starts_with("heartbeats_") {
            ch.query(&format!("OPTIMIZE TABLE {table} FINAL"))
                .execute()
                .await?;
        }
        let bytes: u64 = ch
            .query(
                "SELECT sum(bytes_on_disk) FROM system.parts \
                 WHERE database = currentDatabase() AND table = ? AND active",
            )
            .bind(table)
            .fetch_one()
            .await?;
        out.push((table.to_owned(), bytes as f64 / nodes as f64 / days));
    }
    Ok(out)
}

/// GETs `url` and reads the whole body; a non-2xx answer is an error.
async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    http.get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(())
}

/// Clusters the simulated fleet is split into: node i is in `pool-{i % POOLS}`.
pub(crate) const POOLS: u32 = 10;
/// Nodes per rack: node i carries the agent labels `rack=r{i / RACK_SIZE}` and `zone=z{i % 4}`.
pub(crate) const RACK_SIZE: u32 = 40;

/// One inventory report, one heartbeat, one cluster membership and the agent's labels for each
/// of `nodes` simulated nodes `sim-000000`… (after creating the [`POOLS`] clusters); every 6th
/// one last beat 10 minutes ago and carries the liveness tracker's offline judgement.
pub(crate) async fn publish_fleet(
    js: &async_nats::jetstream::Context,
    nodes: u32,
) -> anyhow::Result<()> {
    use nerve_schemas::{ClusterCreated, Envelope, Label, NodeAssignedToCluster, NodeLabelsSet};
    let now = nerve_platform::now_ms();
    let pool_id = |k: u32| format!("00000000-0000-7000-8000-{k:012}");
    for k in 0..POOLS {
        let created = ClusterCreated {
            envelope: Envelope::new::<ClusterCreated>(pool_id(k), now),
            cluster_id: pool_id(k),
            name: format!("pool-{k}"),
            description: "simulated".into(),
            requested_by: "loadtest".into(),
        };
        js.publish(
            nerve_schemas::subjects::control_cluster(&pool_id(k)),
            nerve_schemas::encode(&created)?.into(),
        )
        .await?
        .await?;
    }
    let mut inflight = FuturesUnordered::new();
    for i in 0..nodes {
        let id = format!("sim-{i:06}");
        let mut inv = crate::sim::inventory(&id, now);
        inv.hostname = format!("host-{i:06}");
        let age = if i % 6 == 0 { 600_000 } else { 0 };
        let hb = crate::sim::heartbeat(&id, 0, now - age);
        let offline = nerve_schemas::NodeWentOffline(nerve_schemas::LivenessChange {
            envelope: nerve_schemas::Envelope::new::<nerve_schemas::NodeWentOffline>(
                id.clone(),
                now,
            ),
            last_heartbeat_at_ms: now - age,
            silent_for_ms: age,
            heartbeat_interval_secs: hb.interval_secs,
            missed_heartbeats: (age / 30_000) as i32,
            previous_state: "suspect".into(),
            detector: "loadtest".into(),
        });
        let judged = (age > 0)
            .then(|| Outgoing::event(nerve_schemas::subjects::liveness(&id), &offline))
            .transpose()?;
        let member = NodeAssignedToCluster {
            envelope: Envelope::new::<NodeAssignedToCluster>(id.clone(), now),
            cluster_id: pool_id(i % POOLS),
            requested_by: "loadtest".into(),
        };
        let label = |key: &str, value: String| Label {
            key: key.into(),
            value,
        };
        let labels = NodeLabelsSet {
            envelope: Envelope::new::<NodeLabelsSet>(id.clone(), now),
            source: "agent".into(),
            labels: vec![
                label("rack", format!("r{}", i / RACK_SIZE)),
                label("zone", format!("z{}", i % 4)),
            ],
            requested_by: "agent".into(),
        };
        for out in [
            Outgoing::event(nerve_schemas::subjects::inventory(&id), &inv)?,
            Outgoing::event(nerve_schemas::subjects::heartbeat(&id), &hb)?,
            Outgoing::event(nerve_schemas::subjects::control_node(&id), &member)?,
            Outgoing::event(nerve_schemas::subjects::control_node(&id), &labels)?,
        ]
        .into_iter()
        .chain(judged)
        {
            let pending = out.send(js).await?;
            inflight.push(pending.stored());
            while inflight.len() >= 4096 {
                if let Some(r) = inflight.next().await {
                    r?;
                }
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(())
}
