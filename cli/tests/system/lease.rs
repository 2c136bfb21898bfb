//! Singleton roles under a lease (`nerve_ingest::lease`), on a real nats-server: of several
//! contenders exactly one runs at a time; when the holder dies without a word another takes
//! over once its lease runs out, and when it stops cleanly another takes over at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nerve_ingest::lease;
use nerve_platform::testkit::{TestNats, eventually};
use tokio_util::sync::CancellationToken;

use crate::support::DEADLINE;

/// How many contenders run the work now, the most that ever did at once, and who runs it.
#[derive(Default)]
struct Running {
    now: AtomicUsize,
    most: AtomicUsize,
    who: std::sync::Mutex<Vec<String>>,
}

/// Counts a contender as running until dropped (also when its task is aborted).
struct Guard(Arc<Running>, String);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut who) = self.0.who.lock() {
            who.retain(|w| w != &self.1);
        }
    }
}

fn contend(
    leases: async_nats::jetstream::kv::Store,
    name: &str,
    running: &Arc<Running>,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (name, running, cancel) = (name.to_owned(), running.clone(), cancel.clone());
    tokio::spawn(async move {
        let lease_period = Duration::from_secs(3);
        lease::lead(
            leases,
            "evaluator",
            &name.clone(),
            lease_period,
            cancel,
            |held| {
                let (running, name) = (running.clone(), name.clone());
                async move {
                    let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
                    running.most.fetch_max(now, Ordering::SeqCst);
                    running.who.lock().expect("lock").push(name.clone());
                    let _guard = Guard(running, name);
                    held.cancelled().await;
                }
            },
        )
        .await;
    })
}

/// The one contender running, once it is not `not`.
async fn holder(running: &Running, not: &str) -> String {
    eventually(DEADLINE, "one contender running", || async {
        let who = running.who.lock().ok()?.clone();
        (who.len() == 1 && who[0] != not).then(|| who[0].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_contender_runs_and_another_takes_over_when_it_dies_or_stops() {
    let nats = TestNats::start();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    let leases = lease::bucket(&js, Duration::from_secs(3), 1)
        .await
        .expect("bucket");
    let running = Arc::new(Running::default());
    let cancel = CancellationToken::new();
    let mut tasks: std::collections::HashMap<
        String,
        (tokio::task::JoinHandle<()>, CancellationToken),
    > = ["a", "b", "c"]
        .into_iter()
        .map(|n| {
            let token = cancel.child_token();
            (
                n.to_owned(),
                (contend(leases.clone(), n, &running, &token), token),
            )
        })
        .collect();

    // The holder dies without a word: another takes over once the lease runs out.
    let first = holder(&running, "").await;
    let died = std::time::Instant::now();
    tasks.remove(&first).expect("task").0.abort();
    let second = holder(&running, &first).await;
    let failover = died.elapsed();

    // The next stops cleanly: the last takes over, well before a lease could run out.
    let stopped = std::time::Instant::now();
    tasks.get(&second).expect("task").1.cancel();
    let third = holder(&running, &second).await;
    let handover = stopped.elapsed();
    assert_ne!(third, first);
    assert_eq!(running.most.load(Ordering::SeqCst), 1, "never two at once");
    eprintln!("failover after a death {failover:?}, after a clean stop {handover:?}");
    cancel.cancel();
}
