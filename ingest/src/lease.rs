//! One active instance of a singleton role per deployment, however many `nerve project`s run:
//! a lease in the JetStream key-value bucket `nerve_leases` (replicated as the streams are).
//! The holder renews its key every third of the lease; the bucket's `max_age` is the lease,
//! so a holder that dies stops renewing and its key expires. The others try to create the key
//! each third of the lease, so one of them takes over within two leases of the holder's
//! last renewal. A holder that stops cleanly deletes its key, so the next one takes over
//! within a third of the lease.
//!
//! Renewal is a compare-and-set on the key's revision: a holder that was paused past its
//! lease finds its key taken, stops its work and campaigns again.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

/// The bucket holding every singleton's lease.
pub const LEASES_BUCKET: &str = "nerve_leases";

/// Why the lease bucket could not be had.
#[derive(Debug, thiserror::Error)]
#[error("lease bucket {LEASES_BUCKET}: {0}")]
pub struct LeaseError(String);

/// The lease bucket, created when missing (`replicas` as the streams have).
pub async fn bucket(
    js: &jetstream::Context,
    lease: Duration,
    replicas: usize,
) -> Result<kv::Store, LeaseError> {
    if let Ok(store) = js.get_key_value(LEASES_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: LEASES_BUCKET.into(),
        description: "Which nerve instance runs each singleton role".into(),
        history: 1,
        max_age: lease,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| LeaseError(e.to_string()))
}

/// Runs `work` whenever this instance (`holder`) holds the lease of `role`, until `cancel`:
/// campaigns, runs it with a token cancelled when the lease is lost, and campaigns again.
pub async fn lead<F, Fut>(
    leases: kv::Store,
    role: &str,
    holder: &str,
    lease: Duration,
    cancel: CancellationToken,
    mut work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let tick = lease / 3;
    while !cancel.is_cancelled() {
        let revision = match leases.create(role, holder.to_owned().into()).await {
            Ok(revision) => revision,
            Err(_) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(tick) => continue,
                }
            }
        };
        tracing::info!(role, holder, "took the lease: running");
        let held = cancel.child_token();
        let renew = renew(&leases, role, holder, revision, tick, held.clone());
        let run = async {
            work(held.clone()).await;
            // Work that ends by itself gives the lease up.
            held.cancel();
        };
        let ((), released) = tokio::join!(run, renew);
        if let Some(revision) = released {
            // Stopping cleanly: the next holder need not wait for the lease to run out.
            let _ = leases.delete_expect_revision(role, Some(revision)).await;
        } else {
            tracing::warn!(role, holder, "lost the lease: stopped; campaigning again");
        }
        // Work that failed at once is not restarted in a tight loop.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Renews the lease every `tick` until `held` is cancelled (returns the revision to release)
/// or a renewal fails (cancels `held`; returns None).
async fn renew(
    leases: &kv::Store,
    role: &str,
    holder: &str,
    mut revision: u64,
    tick: Duration,
    held: CancellationToken,
) -> Option<u64> {
    loop {
        tokio::select! {
            _ = held.cancelled() => return Some(revision),
            _ = tokio::time::sleep(tick) => {}
        }
        match leases
            .update(role, holder.to_owned().into(), revision)
            .await
        {
            Ok(next) => revision = next,
            Err(error) => {
                tracing::warn!(role, %error, "lease renewal failed");
                held.cancel();
                return None;
            }
        }
    }
}
