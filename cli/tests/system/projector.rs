//! The projector's delivery guarantees: ack only after the write, no duplicates on redelivery,
//! bad events rejected and counted without losing the good ones around them, and several
//! projectors on one durable consumer sharing the work, one of them crashing, with every event
//! stored once.

use std::time::Duration;

use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use nerve_projections::heartbeats;
use nerve_schemas::subjects;
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, heartbeat, publish_heartbeat, publish_raw, sample};

async fn consumer_pending(env: &Env) -> (u64, usize) {
    let stream = env
        .js
        .get_stream(nerve_ingest::TELEMETRY_STREAM)
        .await
        .expect("stream");
    let info = stream
        .consumer_info(heartbeats::NAME)
        .await
        .expect("consumer info");
    (info.num_pending, info.num_ack_pending)
}

/// A projector process that dies after ClickHouse accepted a batch but before it acked it leaves
/// the batch unacked; JetStream redelivers it to the next projector, which must recognise the
/// events as written and not insert them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_between_write_and_ack_creates_no_duplicates() {
    let env = Env::start().await;
    let now = nerve_platform::now_ms();
    let n = 500;
    for i in 0..n {
        let hb = heartbeat(&format!("node-{}", i % 50), now - 60_000 + i, i);
        publish_heartbeat(&env.js, &hb).await;
    }

    // Small batches: the crash leaves some delivered events written and others not.
    let mut crashing = env.spawn_nerve_with(
        &["project", "--failpoint", "exit-after-write"],
        &[("NERVE_PROJECTOR__BATCH_MAX_EVENTS", "200")],
    );
    let status = tokio::time::timeout(DEADLINE, crashing.wait())
        .await
        .expect("crashing projector exits")
        .expect("wait");
    assert_eq!(
        status.code(),
        Some(nerve_projections::runner::FAILPOINT_EXIT_CODE),
        "the projector must have stopped at the failpoint"
    );
    // It wrote a batch and acked nothing.
    let written = env.count("SELECT count() FROM heartbeats").await;
    // One batch: up to 200 events (fewer if the batch window closed first).
    assert!(
        (1..=200).contains(&written),
        "the crashing projector wrote {written} rows, expected one batch"
    );
    let (pending, ack_pending) = consumer_pending(&env).await;
    assert_eq!(
        pending + ack_pending as u64,
        n as u64,
        "nothing may be acked before the crash"
    );

    // A healthy projector takes over once the ack wait expires and finishes the stream; it
    // counts the batch it was given again.
    let metrics_addr = format!(
        "127.0.0.1:{}",
        nerve_platform::services::free_port().expect("port")
    );
    let mut healthy = env.spawn_nerve_with(
        &["project"],
        &[("NERVE_METRICS__LISTEN_ADDR", metrics_addr.as_str())],
    );
    eventually(DEADLINE, "every event acked", || async {
        (consumer_pending(&env).await == (0, 0)).then_some(())
    })
    .await;
    let redelivered = eventually(DEADLINE, "the redeliveries counted", || async {
        let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let n = sample(&text, "nerve_projector_redeliveries_total");
        (n >= 1.0).then_some(n)
    })
    .await;
    assert!(redelivered <= n as f64, "{redelivered} of {n} events");
    // Events published after the restart are projected too.
    let extra = heartbeat("node-late", nerve_platform::now_ms(), 0);
    publish_heartbeat(&env.js, &extra).await;
    // Heartbeats and node_state are separate inserts: wait for both.
    eventually(DEADLINE, "the late event in both tables", || async {
        let rows = "SELECT count() FROM heartbeats WHERE node_id = 'node-late'";
        let state = "SELECT count() FROM node_state WHERE node_id = 'node-late'";
        (env.count(rows).await == 1 && env.count(state).await == 1).then_some(())
    })
    .await;

    assert_eq!(
        env.count("SELECT count() FROM heartbeats").await,
        n as u64 + 1
    );
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM heartbeats")
            .await,
        n as u64 + 1
    );
    assert_eq!(
        env.count("SELECT count() FROM (SELECT node_id FROM node_state FINAL)")
            .await,
        51
    );
    healthy.kill().await.expect("kill");
}

/// A whole large batch redelivered after a crash: 8,000 event ids are more than one query can
/// carry (ClickHouse's `max_query_size`), so the check for already written events must be split,
/// or the batch could never be written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_redelivered_batch_is_checked_in_parts_and_not_duplicated() {
    let env = Env::start().await;
    let now = nerve_platform::now_ms();
    let n: i64 = 8_000;
    for part in 0..n / 500 {
        let mut acks = Vec::new();
        for i in part * 500..(part + 1) * 500 {
            let hb = heartbeat(&format!("node-{}", i % 400), now - 60_000 + i, i);
            let subject = subjects::heartbeat(&hb.envelope.node_id);
            let out = nerve_ingest::Outgoing::event(subject, &hb).expect("encode");
            acks.push(out.send(&env.js).await.expect("publish"));
        }
        for ack in acks {
            ack.stored().await.expect("ack");
        }
    }

    // One batch of everything, written, never acked.
    let one_batch = [
        ("NERVE_PROJECTOR__BATCH_MAX_EVENTS", "20000"),
        ("NERVE_PROJECTOR__BATCH_MAX_WAIT_MS", "1500"), // under the test's 2 s ack wait
    ];
    let mut crashing =
        env.spawn_nerve_with(&["project", "--failpoint", "exit-after-write"], &one_batch);
    let status = tokio::time::timeout(DEADLINE, crashing.wait())
        .await
        .expect("crashing projector exits")
        .expect("wait");
    assert_eq!(
        status.code(),
        Some(nerve_projections::runner::FAILPOINT_EXIT_CODE)
    );
    let written = env.count("SELECT count() FROM heartbeats").await;
    assert!(written > 6_600, "one large batch written: {written} rows");

    // The next projector gets the batch again, in one batch of its own.
    let mut healthy = env.spawn_nerve_with(&["project"], &one_batch);
    eventually(DEADLINE, "every event acked", || async {
        (consumer_pending(&env).await == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(env.count("SELECT count() FROM heartbeats").await, n as u64);
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM heartbeats")
            .await,
        n as u64
    );
    healthy.kill().await.expect("kill");
}

/// A batch whose write fails half way is retried until every table has it, and nothing is
/// written twice: the current-state table goes first and the append-only `heartbeats` last, so
/// an event found in `heartbeats` (and left out of a retry) is in `node_state` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_half_way_is_retried_without_duplicates_or_gaps() {
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let now = nerve_platform::now_ms();
    // The projector is up (its tables made) once a first event is in both tables.
    publish_heartbeat(&env.js, &heartbeat("node-first", now - 20_000, 0)).await;
    eventually(DEADLINE, "the first event in both tables", || async {
        let rows = "SELECT count() FROM heartbeats WHERE node_id = 'node-first'";
        (env.count(rows).await == 1).then_some(())
    })
    .await;

    // Without node_state every write fails, and must fail before `heartbeats` took anything.
    env.ch
        .query("RENAME TABLE node_state TO node_state_away")
        .execute()
        .await
        .expect("rename");
    let n: i64 = 100;
    for i in 0..n {
        let hb = heartbeat(&format!("node-{}", i % 10), now - 10_000 + i, i);
        publish_heartbeat(&env.js, &hb).await;
    }
    eventually(DEADLINE, "the write failing and retried", || async {
        (projector_counter(&metrics, "nerve_projector_write_errors_total") >= 3).then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM heartbeats").await,
        1,
        "heartbeats written while node_state could not be"
    );
    env.ch
        .query("RENAME TABLE node_state_away TO node_state")
        .execute()
        .await
        .expect("rename back");

    eventually(DEADLINE, "every event in both tables", || async {
        let state = "SELECT count() FROM (SELECT node_id FROM node_state FINAL)";
        let acked = consumer_pending(&env).await == (0, 0);
        (acked && env.count(state).await == 11).then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM heartbeats").await,
        n as u64 + 1,
        "an event written twice or not at all"
    );
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM heartbeats")
            .await,
        n as u64 + 1
    );

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), projectors)
        .await
        .expect("projectors stop on cancel")
        .expect("join")
        .expect("projectors");
}

/// Garbage, an event for the wrong node's subject and an event from a broken clock sit between
/// good events: the bad ones land in `rejected_events` and the counter, the good ones in
/// `heartbeats`, and the projector keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_rejected_counted_and_do_not_stop_the_projector() {
    let env = Env::start().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let now = nerve_platform::now_ms();
    let good = |i: i64| heartbeat("node-a", now - 10_000 + i, i);

    publish_heartbeat(&env.js, &good(0)).await;
    publish_raw(
        &env.js,
        subjects::heartbeat("node-a"),
        "bad-1",
        b"not avro at all".to_vec(),
    )
    .await;
    publish_heartbeat(&env.js, &good(1)).await;
    // A valid event, but published on another node's subject.
    let imposter = heartbeat("node-b", now, 0);
    let payload = nerve_schemas::encode(&imposter).expect("encode");
    publish_raw(&env.js, subjects::heartbeat("node-a"), "bad-2", payload).await;
    publish_heartbeat(&env.js, &good(2)).await;
    // A valid event from a clock in 1970.
    let ancient = heartbeat("node-a", 1_000, 9);
    publish_heartbeat(&env.js, &ancient).await;
    // A truncated event.
    let mut cut = nerve_schemas::encode(&good(99)).expect("encode");
    cut.truncate(cut.len() / 2);
    publish_raw(&env.js, subjects::heartbeat("node-a"), "bad-4", cut).await;
    publish_heartbeat(&env.js, &good(3)).await;

    eventually(
        DEADLINE,
        "good events stored and bad ones rejected",
        || async {
            let good = env.count("SELECT count() FROM heartbeats").await;
            let bad = env.count("SELECT count() FROM rejected_events FINAL").await;
            (good == 4 && bad == 4).then_some(())
        },
    )
    .await;
    let rendered = metrics.render();
    assert!(
        rendered.contains("nerve_projector_rejected_total{projection=\"proj_heartbeats\"} 4"),
        "{rendered}"
    );
    let reasons: Vec<String> = env
        .ch
        .query("SELECT error FROM rejected_events FINAL ORDER BY stream_seq")
        .fetch_all()
        .await
        .expect("reasons");
    assert!(reasons[0].contains("single-object"), "{reasons:?}");
    assert!(reasons[1].contains("does not match subject"), "{reasons:?}");
    assert!(reasons[2].contains("implausible"), "{reasons:?}");
    assert!(reasons[3].contains("does not decode"), "{reasons:?}");

    // Still running: a later good event is stored.
    publish_heartbeat(&env.js, &good(4)).await;
    eventually(DEADLINE, "an event after the bad ones", || async {
        (env.count("SELECT count() FROM heartbeats").await == 5).then_some(())
    })
    .await;
    let ids: Vec<i64> = env
        .ch
        .query("SELECT toInt64(seq) FROM heartbeats ORDER BY seq")
        .fetch_all()
        .await
        .expect("seqs");
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), projectors)
        .await
        .expect("projectors stop on cancel")
        .expect("join")
        .expect("projectors");
}

/// The heartbeat projector's counter `name`, as `metrics` renders it.
fn projector_counter(metrics: &Registry, name: &str) -> u64 {
    let prefix = format!("{name}{{projection=\"proj_heartbeats\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Heartbeats the projector reporting to `metrics` wrote.
fn heartbeats_written(metrics: &Registry) -> u64 {
    projector_counter(metrics, "nerve_projector_events_total")
}

/// Three projectors, each with its own NATS connection (as three processes would have), bind
/// the same durable consumers: the stream's work is spread over them; one dies mid-stream
/// (its task dropped, its connection closed, its unacked batch redelivered to the others) and
/// every event is still stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_on_one_durable_consumer_share_the_work_without_duplicates() {
    let env = Env::start().await;
    let mut config = env.config.projector.clone();
    config.batch_max_events = 200;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let client = async_nats::connect(env.nats.url()).await.expect("nats");
        let (metrics, cancel) = (Registry::new(), CancellationToken::new());
        let task = tokio::spawn(nerve_projections::run_all(
            async_nats::jetstream::new(client),
            env.config.clickhouse.clone(),
            config.clone(),
            metrics.clone(),
            None,
            cancel.clone(),
        ));
        instances.push((metrics, cancel, task));
    }
    let (nodes, per_node) = (100, 60);
    let now = nerve_platform::now_ms();
    for k in 0..per_node {
        for i in 0..nodes {
            let hb = heartbeat(&format!("node-{i}"), now - 600_000 + k * 1000, k);
            publish_heartbeat(&env.js, &hb).await;
        }
        if k == per_node / 2 {
            // The third projector crashes halfway.
            instances[2].2.abort();
        }
    }
    let total = (nodes * per_node) as u64;
    eventually(
        Duration::from_secs(60),
        "every heartbeat stored",
        || async { (env.count("SELECT count() FROM heartbeats").await >= total).then_some(()) },
    )
    .await;
    eventually(DEADLINE, "every event acked", || async {
        (consumer_pending(&env).await == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(env.count("SELECT count() FROM heartbeats").await, total);
    assert_eq!(
        env.count("SELECT uniqExact(event_id) FROM heartbeats")
            .await,
        total,
        "an event stored twice"
    );
    let shares: Vec<u64> = instances
        .iter()
        .map(|(m, _, _)| heartbeats_written(m))
        .collect();
    assert!(
        shares[0] > 0 && shares[1] > 0,
        "the surviving projectors both worked: {shares:?}"
    );
    for (_, cancel, task) in instances.into_iter().take(2) {
        cancel.cancel();
        task.await.expect("join").expect("projector");
    }
}
