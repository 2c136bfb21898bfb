//! Rebuilding the read models from the log: after a run of every kind of event (a real agent
//! and its inventory, a task, a cluster, labels, a channel, a firing alert rule, a silence,
//! liveness changes, malformed events), a replay into shadow tables matches every live
//! partition, twice over; every table dropped and rebuilt by `nerve replay` is the same again;
//! and a rebuild while heartbeats flow loses and duplicates nothing, and no read fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::http::{Method, StatusCode};
use nerve_platform::testkit::eventually;
use nerve_projections::replay::{self, Options, ProjectionReport, Sum};
use nerve_schemas::subjects;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Env, call, heartbeat, publish_heartbeat, publish_raw, publish_went_offline, signal,
};

/// Every table's partition checksums, as a check-only replay computes them.
async fn checksums(env: &Env) -> BTreeMap<String, BTreeMap<String, Sum>> {
    let reports = replay::rebuild(
        &env.js,
        &env.config.clickhouse,
        &Options {
            check_only: true,
            ..Options::default()
        },
        &|_| {},
    )
    .await
    .expect("replay");
    for r in &reports {
        assert!(r.matched(), "live differs from its log: {r:#?}");
    }
    sums(&reports)
}

fn sums(reports: &[ProjectionReport]) -> BTreeMap<String, BTreeMap<String, Sum>> {
    reports
        .iter()
        .flat_map(|r| {
            r.tables
                .iter()
                .map(move |t| (format!("{}/{}", r.projection, t.table), t.sums.clone()))
        })
        .collect()
}

async fn accepted(app: &crate::support::Api, method: Method, uri: &str, body: Value) -> Value {
    let (status, body) = call(app, method, uri, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{uri}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_the_fold_of_its_log() {
    let env = Env::start().await;
    let eval = [("NERVE_ALERTS__EVAL_INTERVAL_MS", "200")];
    let mut project = env.spawn_nerve_with(&["project"], &eval);
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env.node_of(&env.config.agent.state_dir).await;
    let app = env.app().await;

    // Control: a cluster with the node, labels, a channel, a rule that fires, a silence.
    accepted(
        &app,
        Method::POST,
        "/api/v1/clusters",
        json!({"name": "train"}),
    )
    .await;
    eventually(DEADLINE, "the cluster", || async {
        let (s, _) = call(&app, Method::GET, "/api/v1/clusters/train", Value::Null).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let member = format!("/api/v1/clusters/train/nodes/{node}");
    accepted(&app, Method::PUT, &member, Value::Null).await;
    let labels = format!("/api/v1/nodes/{node}/labels");
    accepted(&app, Method::PUT, &labels, json!({"labels": ["rack=r1"]})).await;
    let hook = json!({"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/h"});
    accepted(&app, Method::POST, "/api/v1/channels", hook).await;
    eventually(DEADLINE, "the channel", || async {
        let (_, l) = call(&app, Method::GET, "/api/v1/channels", Value::Null).await;
        (l["channels"][0]["name"] == "ops").then_some(())
    })
    .await;
    let rule = json!({"name": "mem-used", "kind": "threshold", "metric": "mem_used_pct",
        "aggregate": "avg", "op": ">", "threshold": 0.0, "window_secs": 600, "for_secs": 0,
        "resolve_after_secs": 0, "severity": "warning", "channels": ["ops"]});
    accepted(&app, Method::POST, "/api/v1/alerts/rules", rule).await;
    let silence = json!({"node_id": "elsewhere", "duration": "1h", "reason": "maintenance"});
    accepted(&app, Method::POST, "/api/v1/silences", silence).await;
    // A task on the node.
    let task = json!({"kind": "command", "argv": ["echo", "hi"], "targets": {"node_ids": [node]}});
    let task = accepted(&app, Method::POST, "/api/v1/tasks", task).await;
    let task_id = task["task_id"].as_str().expect("task id").to_owned();
    // A node that went silent, and malformed events on two streams.
    let ghost = "ghost-1";
    let now = nerve_platform::now_ms();
    publish_heartbeat(&env.js, &heartbeat(ghost, now - 60_000, 1)).await;
    publish_went_offline(&env.js, ghost, now - 60_000).await;
    publish_raw(
        &env.js,
        subjects::heartbeat("bad-1"),
        "bad-1",
        b"\xc3\x01junk".to_vec(),
    )
    .await;
    publish_raw(
        &env.js,
        subjects::inventory("bad-2"),
        "bad-2",
        b"{}".to_vec(),
    )
    .await;

    eventually(DEADLINE, "the task done, an alert firing, the ghost offline", || async {
        let done = env
            .count(&format!(
                "SELECT count() FROM task_nodes FINAL WHERE task_id = '{task_id}' AND state = 'succeeded'"
            ))
            .await;
        let firing = env.count("SELECT count() FROM alerts FINAL WHERE state = 'firing'").await;
        let offline = env
            .count(&format!(
                "SELECT count() FROM node_events WHERE node_id = '{ghost}' AND liveness = 'offline'"
            ))
            .await;
        let rejected = env.count("SELECT count() FROM rejected_events").await;
        (done == 1 && firing >= 1 && offline == 1 && rejected == 2).then_some(())
    })
    .await;

    // With everything still running, a replay into shadow tables matches every partition.
    let (ok, out) = env.run_nerve(&["replay", "--check"]).await;
    assert!(ok, "{out}");
    assert!(!out.contains("differ"), "{out}");
    for table in [
        "heartbeats",
        "node_state",
        "inventory",
        "task_nodes",
        "cluster_members",
    ] {
        assert!(out.contains(table), "{table} compared: {out}");
    }

    // Quiet, twice: the same checksums both times.
    signal(&mut agent, "-TERM").await;
    signal(&mut project, "-TERM").await;
    let before = checksums(&env).await;
    assert_eq!(checksums(&env).await, before, "a replay is deterministic");
    let heartbeats = &before[&format!("{}/heartbeats", nerve_projections::heartbeats::NAME)];
    assert!(heartbeats.values().map(|s| s.rows).sum::<u64>() >= 2);

    // Every table dropped: `nerve replay` builds them again, the same to the hash.
    for statement in nerve_projections::all_ddl(&env.config.clickhouse.database) {
        let table = statement
            .split_whitespace()
            .skip_while(|w| *w != "EXISTS")
            .nth(1)
            .expect("CREATE … IF NOT EXISTS db.table");
        env.ch
            .query(&format!("DROP TABLE {table}"))
            .execute()
            .await
            .expect("drop");
    }
    let (ok, out) = env.run_nerve(&["replay"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(checksums(&env).await, before, "rebuilt from the log alone");
    // From a time on: only the time-partitioned tables, from that month's start.
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let (ok, out) = env.run_nerve(&["replay", "--check", "--from", &now]).await;
    assert!(ok && !out.contains("differ"), "{out}");
    assert!(
        out.contains("node_state") && out.contains("skipped: a current-state table"),
        "{out}"
    );
    let (ok, out) = env.run_nerve(&["replay", "--from", "yesterday"]).await;
    assert!(!ok && out.contains("not an RFC 3339 time"), "{out}");
    let stored = env
        .count(&format!(
            "SELECT count() FROM task_nodes FINAL WHERE task_id = '{task_id}' AND state = 'succeeded'"
        ))
        .await;
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_heartbeats_flow_loses_and_duplicates_nothing() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    // Heartbeats from 20 nodes until told to stop; how many were acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (js, stop, sent) = (env.js.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                for n in 0..20 {
                    let hb = heartbeat(&format!("n-{n}"), nerve_platform::now_ms(), seq);
                    publish_heartbeat(&js, &hb).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    eventually(DEADLINE, "heartbeats stored", || async {
        (env.count("SELECT count() FROM heartbeats").await >= 400).then_some(())
    })
    .await;
    // Lose today's live partition: the rebuild must bring it back while ingest goes on.
    let today: String = env
        .ch
        .query("SELECT toString(toYYYYMMDD(today()))")
        .fetch_one()
        .await
        .expect("today");
    env.ch
        .query(&format!(
            "ALTER TABLE heartbeats DROP PARTITION ID '{today}'"
        ))
        .execute()
        .await
        .expect("drop partition");
    // Readers keep reading throughout.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (ch, reading) = (env.ch.clone(), reading.clone());
        tokio::spawn(async move {
            let (mut reads, mut failures) = (0u64, Vec::new());
            while reading.load(Ordering::SeqCst) {
                for sql in [
                    "SELECT count() FROM heartbeats",
                    "SELECT count() FROM node_state FINAL",
                ] {
                    match ch.query(sql).fetch_one::<u64>().await {
                        Ok(_) => reads += 1,
                        Err(e) => failures.push(e.to_string()),
                    }
                }
            }
            (reads, failures)
        })
    };
    let (ok, out) = env.run_nerve(&["replay", "--tables", "heartbeats"]).await;
    reading.store(false, Ordering::SeqCst);
    assert!(ok, "{out}");
    assert!(
        out.contains("replaced"),
        "the lost partition was replaced: {out}"
    );
    let (reads, failures) = reader.await.expect("reader");
    assert!(
        reads > 0 && failures.is_empty(),
        "{reads} reads, failures: {failures:?}"
    );

    stop.store(true, Ordering::SeqCst);
    publisher.await.expect("publisher");
    let sent = sent.load(Ordering::SeqCst);
    eventually(DEADLINE, "every heartbeat stored", || async {
        (env.count("SELECT count() FROM heartbeats").await == sent).then_some(())
    })
    .await;
    let distinct = env
        .count("SELECT uniqExact(event_id) FROM heartbeats")
        .await;
    assert_eq!(distinct, sent, "no heartbeat lost or stored twice");
    signal(&mut project, "-TERM").await;
    let after = checksums(&env).await;
    assert!(!after.is_empty());
}
