//! Nerve on a replicated, sharded ClickHouse: the 2 shards × 2 replicas of
//! `infra/clickhouse/cluster/` with ZooKeeper, as ClickHouse 18.16 runs them. The tables are
//! created `ON CLUSTER` (twice: idempotent), writes and reads go through the `Distributed`
//! tables, each shard holds its part and its replicas the same rows. Fault drills: one replica
//! killed (SIGKILL) under load, and every server down for a while: nothing acked is lost or
//! stored twice, and a restarted replica catches up.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::{TestClickHouseCluster, eventually};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{Env, call, get_ok, heartbeat, publish_heartbeat, signal};

/// Replication and catch-up after a restart take longer than one server's writes (and four
/// servers with ZooKeeper share the test machine with every other test).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(120);

/// `sql`'s single number on one server (not through the cluster).
async fn on_server(url: &str, db: &str, sql: &str) -> Option<u64> {
    let config = nerve_platform::config::ClickHouseConfig {
        url: url.to_owned(),
        database: db.to_owned(),
        ..Default::default()
    };
    nerve_platform::clickhouse::client(&config)
        .query(sql)
        .fetch_one::<u64>()
        .await
        .ok()
}

/// Publishes heartbeats `from..to` (sequence numbers) for 40 nodes, each acked.
async fn publish_range(env: &Env, from: i64, to: i64) {
    for seq in from..to {
        let hb = heartbeat(&format!("n-{:02}", seq % 40), nerve_platform::now_ms(), seq);
        publish_heartbeat(&env.js, &hb).await;
    }
}

/// Waits until `heartbeats` holds exactly `n` distinct events, `n` rows.
async fn all_projected(env: &Env, n: u64, deadline: Duration) {
    let (count, unique) = eventually(deadline, "every acked heartbeat projected", || async {
        // One query, so no row lands between the two counts.
        let (count, unique): (u64, u64) = env
            .ch
            .query("SELECT count(), uniqExact(event_id) FROM heartbeats")
            .fetch_one()
            .await
            .ok()?;
        (unique == n && count >= n).then_some((count, unique))
    })
    .await;
    assert_eq!((count, unique), (n, n), "none lost, none twice");
}

/// Both replicas of each shard hold the same rows, and the shards together all of them.
async fn replicas_agree(cluster: &TestClickHouseCluster, db: &str, n: u64) -> [u64; 2] {
    let servers: Vec<String> = cluster
        .cluster
        .servers
        .iter()
        .map(|s| s.url.clone())
        .collect();
    eventually(CLUSTER_DEADLINE, "the replicas in step", || async {
        let mut counts = Vec::new();
        for url in &servers {
            counts.push(on_server(url, db, "SELECT count() FROM heartbeats_local").await?);
        }
        (counts[0] == counts[1] && counts[2] == counts[3] && counts[0] + counts[2] == n)
            .then_some([counts[0], counts[2]])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_replicated_and_sharded_and_reads_and_writes_go_through_the_cluster() {
    let cluster = TestClickHouseCluster::start().await;
    let env = Env::start_with_clickhouse(cluster.config()).await;
    let db = env.config.clickhouse.database.clone();
    // A second start finds everything in place.
    nerve_projections::ensure_tables(&env.config.clickhouse)
        .await
        .expect("ensure_tables again");
    for server in &cluster.cluster.servers {
        for (table, engine) in [
            ("heartbeats_local", "ReplicatedMergeTree"),
            ("heartbeats", "Distributed"),
            ("node_state_local", "ReplicatedReplacingMergeTree"),
            ("heartbeats_1m_local", "ReplicatedSummingMergeTree"),
            ("heartbeats_1m_mv", "MaterializedView"),
        ] {
            let sql = format!(
                "SELECT count() FROM system.tables WHERE database = '{db}' AND name = '{table}' \
                 AND engine = '{engine}'"
            );
            assert_eq!(
                on_server(&server.url, &db, &sql).await,
                Some(1),
                "{} {table}",
                server.url
            );
        }
    }

    // `nerve project` as deployed: every server's URL and the cluster from its environment.
    let mut project = env.spawn_nerve(&["project"]);
    publish_range(&env, 1, 401).await;
    all_projected(&env, 400, CLUSTER_DEADLINE).await;
    let [first, second] = replicas_agree(&cluster, &db, 400).await;
    assert!(
        first > 0 && second > 0,
        "both shards hold rows: {first} + {second}"
    );
    // The roll-up views fire where the rows land and replicate with them (a read may meet
    // the other replica of a shard before it fetched them).
    eventually(
        CLUSTER_DEADLINE,
        "every heartbeat in the minute roll-up",
        || async {
            let n = env
                .ch
                .query("SELECT sum(samples) FROM heartbeats_1m")
                .fetch_one::<u64>()
                .await
                .ok()?;
            (n == 400).then_some(())
        },
    )
    .await;

    // The API reads through the cluster: current state with FINAL, and a filter whose
    // subquery reads another distributed table.
    let app = env.app().await;
    let page = eventually(CLUSTER_DEADLINE, "every node listed", || async {
        let (status, page) = call(&app, Method::GET, "/api/v1/nodes?limit=100", Value::Null).await;
        (status == StatusCode::OK && page["total"] == 40).then_some(page)
    })
    .await;
    assert_eq!(page["nodes"].as_array().map(Vec::len), Some(40));
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "pod-a"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    // The cluster exists once its event is projected (the POST answers 202 before).
    eventually(CLUSTER_DEADLINE, "the cluster listed", || async {
        let (status, list) = call(&app, Method::GET, "/api/v1/clusters", Value::Null).await;
        (status == StatusCode::OK && list.to_string().contains("pod-a")).then_some(())
    })
    .await;
    for node in ["n-01", "n-02", "n-33"] {
        let uri = format!("/api/v1/clusters/pod-a/nodes/{node}");
        let (status, body) = call(&app, Method::PUT, &uri, Value::Null).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let page = eventually(CLUSTER_DEADLINE, "the cluster filter", || async {
        let (status, page) = call(
            &app,
            Method::GET,
            "/api/v1/nodes?cluster=pod-a",
            Value::Null,
        )
        .await;
        (status == StatusCode::OK && page["total"] == 3).then_some(page)
    })
    .await;
    let mut ids: Vec<&str> = page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["n-01", "n-02", "n-33"]);
    eventually(CLUSTER_DEADLINE, "a node's detail", || async {
        let (status, node) = call(&app, Method::GET, "/api/v1/nodes/n-07", Value::Null).await;
        (status == StatusCode::OK && node["id"] == "n-07").then_some(())
    })
    .await;

    // Retention finds a partition past its window on whichever shard holds it and drops it
    // on every replica.
    let old_ms = nerve_platform::now_ms() - 10 * 86_400_000;
    for seq in 0..6 {
        let hb = heartbeat(&format!("old-{seq}"), old_ms, seq);
        publish_heartbeat(&env.js, &hb).await;
    }
    all_projected(&env, 406, CLUSTER_DEADLINE).await;
    let server = nerve_platform::clickhouse::server_client(&env.config.clickhouse);
    let dropped = nerve_projections::retention::run_once(
        &server,
        &db,
        &env.config.clickhouse.cluster,
        &nerve_platform::config::RetentionConfig::default(),
        nerve_platform::now_ms(),
    )
    .await
    .expect("retention on the cluster");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].table, "heartbeats");
    eventually(
        CLUSTER_DEADLINE,
        "the old partition gone everywhere",
        || async {
            let mut left = 0;
            for s in &cluster.cluster.servers {
                left += on_server(
                    &s.url,
                    &db,
                    "SELECT count() FROM heartbeats_local WHERE node_id LIKE 'old-%'",
                )
                .await?;
            }
            (left == 0).then_some(())
        },
    )
    .await;
    assert_eq!(env.count("SELECT count() FROM heartbeats").await, 400);

    // A rebuild says plainly that it does not run on a cluster yet.
    let (ok, said) = env.run_nerve(&["replay", "--check"]).await;
    assert!(!ok && said.contains("clickhouse.cluster"), "{said}");
    signal(&mut project, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing_and_catches_up_after_restart() {
    let mut cluster = TestClickHouseCluster::start().await;
    let env = Env::start_with_clickhouse(cluster.config()).await;
    let db = env.config.clickhouse.database.clone();
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    publish_range(&env, 1, 301).await;
    all_projected(&env, 300, CLUSTER_DEADLINE).await;

    // ch1 is the first server Nerve connects to, and a replica of shard 1.
    cluster.cluster.servers[0].kill();
    publish_range(&env, 301, 601).await;
    all_projected(&env, 600, CLUSTER_DEADLINE).await;
    let app = env.app().await;
    let page = get_ok(&app, "/api/v1/nodes?limit=100").await;
    assert_eq!(page["total"], 40, "reads go on: {page}");

    let restarted = Instant::now();
    let server = &mut cluster.cluster.servers[0];
    tokio::task::block_in_place(|| server.restart()).expect("restart ch1");
    publish_range(&env, 601, 701).await;
    all_projected(&env, 700, CLUSTER_DEADLINE).await;
    let [first, second] = replicas_agree(&cluster, &db, 700).await;
    tracing::info!(
        first,
        second,
        catch_up_ms = restarted.elapsed().as_millis() as u64,
        "the restarted replica caught up"
    );
    cancel.cancel();
}

/// How long ClickHouse stays down in [`clickhouse_down_for_a_minute_under_load_loses_nothing`].
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_a_minute_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = tokio::task::block_in_place(|| {
        nerve_platform::services::ClickHouseServer::start(dir.path(), None)
    })
    .expect("clickhouse");
    let env = Env::start_with_clickhouse(nerve_platform::config::ClickHouseConfig {
        url: server.url.clone(),
        database: "drill".into(),
        ..Default::default()
    })
    .await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);
    publish_range(&env, 1, 201).await;
    all_projected(&env, 200, CLUSTER_DEADLINE).await;

    // Every server gone for a minute while heartbeats keep coming (20 a second).
    server.kill();
    let down = Instant::now();
    let mut seq = 201;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while down.elapsed() < OUTAGE {
        tick.tick().await;
        publish_range(&env, seq, seq + 1).await;
        seq += 1;
    }
    let restarted = Instant::now();
    tokio::task::block_in_place(|| server.restart()).expect("restart");
    let acked = (seq - 1) as u64;
    all_projected(&env, acked, CLUSTER_DEADLINE).await;
    let catch_up = restarted.elapsed();
    eprintln!(
        "clickhouse down {:?} under load: {} heartbeats acked meanwhile, all stored {catch_up:?} \
         after the restart",
        OUTAGE,
        acked - 200
    );
    cancel.cancel();
}
