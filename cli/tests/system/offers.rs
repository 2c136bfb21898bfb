//! Signed dispatch: a real agent opens only offers signed by the key it pinned, fresh and new.
//! An unsigned offer, one signed by another key, and a replay of a valid one are refused, and
//! each is reported as `TaskOfferRefused`; none of them runs.

use nerve_ingest::offer::OfferSigner;
use nerve_platform::testkit::eventually;
use nerve_schemas::{Envelope, TaskDispatched, TaskEvent, TaskSpec, subjects};
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, signal, stored_messages};

fn offer(node: &str, task_id: &str) -> bytes::Bytes {
    let dispatched = TaskDispatched {
        envelope: Envelope::new::<TaskDispatched>(node, nerve_platform::now_ms()),
        task_id: task_id.to_owned(),
        attempt: 1,
        deadline_ms: nerve_platform::now_ms() + 30_000,
        spec: TaskSpec {
            kind: "command".into(),
            argv: vec!["true".into()],
            timeout_secs: 10,
            max_output_bytes: 1024,
            ..TaskSpec::default()
        },
    };
    nerve_schemas::encode(&dispatched).expect("encode").into()
}

/// Every task event the node published, decoded.
async fn node_events(env: &Env, node: &str) -> Vec<TaskEvent> {
    let subject = subjects::task_node(node);
    stored_messages(&env.js, nerve_ingest::TASKS_STREAM, Some(&subject))
        .await
        .iter()
        .map(|(_, payload)| TaskEvent::decode(payload).expect("task event"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_refuses_and_reports_unsigned_foreign_and_replayed_offers() {
    let env = Env::start().await;
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&nerve_platform::metrics::Registry::new(), &cancel);
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env.node_of(&env.state_dir.path().join("agent")).await;
    let client = async_nats::connect(env.nats.url()).await.expect("nats");
    let subject = subjects::dispatch(&node);
    let ids = ["unsigned", "foreign", "valid"].map(|_| uuid::Uuid::now_v7().to_string());
    let [unsigned, foreign, valid] = &ids;

    // A valid offer is answered; sending its exact bytes again is a replay.
    let payload = offer(&node, valid);
    let headers = env.signer().sign(&subject, &payload);
    let answer = client
        .request_with_headers(subject.clone(), headers.clone(), payload.clone())
        .await
        .expect("the valid offer is answered");
    assert!(matches!(
        TaskEvent::decode(&answer.payload),
        Ok(TaskEvent::TaskAccepted(_))
    ));
    client
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .expect("replay");
    client
        .publish(subject.clone(), offer(&node, unsigned))
        .await
        .expect("unsigned");
    let payload = offer(&node, foreign);
    let forged = OfferSigner::generate().sign(&subject, &payload);
    client
        .publish_with_headers(subject.clone(), forged, payload)
        .await
        .expect("foreign");
    client.flush().await.expect("flush");

    let refusals = eventually(DEADLINE, "three refusals reported", || async {
        let refused: Vec<(String, String)> = node_events(&env, &node)
            .await
            .into_iter()
            .filter_map(|e| match e {
                TaskEvent::TaskOfferRefused(r) => Some((r.task_id, r.reason)),
                _ => None,
            })
            .collect();
        (refused.len() >= 3).then_some(refused)
    })
    .await;
    let mut refusals = refusals;
    refusals.sort();
    let mut expected = vec![
        (unsigned.clone(), "unsigned".to_owned()),
        (foreign.clone(), "untrusted_key".to_owned()),
        (valid.clone(), "replayed".to_owned()),
    ];
    expected.sort();
    assert_eq!(refusals, expected);
    // Only the valid offer ran, once; the reports reached ClickHouse.
    let events = eventually(DEADLINE, "the valid task finished", || async {
        let events = node_events(&env, &node).await;
        events
            .iter()
            .any(|e| matches!(e, TaskEvent::TaskFinished(f) if &f.task_id == valid))
            .then_some(events)
    })
    .await;
    let accepted: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::TaskAccepted(a) => Some(a.task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, [valid.as_str()]);
    eventually(DEADLINE, "the refusals projected", || async {
        (env.count("SELECT count() FROM task_events WHERE kind = 'TaskOfferRefused'")
            .await
            == 3)
            .then_some(())
    })
    .await;

    signal(&mut agent, "-TERM").await;
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
