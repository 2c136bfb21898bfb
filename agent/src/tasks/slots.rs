//! The node's task slots: at most `agent.max_concurrent_tasks` tasks run at once; the rest wait
//! in arrival order (tokio's semaphore hands freed permits to waiters first come, first served)
//! and are reported as `TaskQueued` with their place.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nerve_schemas::{TaskCancelled, TaskDispatched, TaskQueued};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Reporter;

/// The slots and how many tasks wait for one.
#[derive(Debug)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    /// 0: no limit.
    max: usize,
    waiting: AtomicUsize,
}

/// A task's place in the queue; leaving it (run or cancelled) frees the place.
#[derive(Debug)]
pub struct Waiting<'a> {
    slots: &'a Slots,
    /// 1 runs next.
    pub position: usize,
}

impl Slots {
    /// `max` slots (0: as many as asked for).
    pub fn new(max: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(if max == 0 {
                Semaphore::MAX_PERMITS
            } else {
                max
            })),
            max,
            waiting: AtomicUsize::new(0),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot now, or a place in the queue.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, Waiting<'_>> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => Err(Waiting {
                position: self.waiting.fetch_add(1, Ordering::SeqCst) + 1,
                slots: self,
            }),
        }
    }
}

impl Waiting<'_> {
    /// The slot, once one is free (queued tasks get theirs in order).
    pub async fn turn(self) -> OwnedSemaphorePermit {
        self.slots
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the task slots are never closed")
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.slots.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One of the node's task slots for `task`: at once, or after waiting its turn (reported as
/// `TaskQueued`); `None` when it was cancelled while waiting (reported as `TaskCancelled`).
pub(super) async fn turn(
    reporter: &Reporter,
    task: &TaskDispatched,
    slots: &Slots,
    cancel: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let waiting = match slots.take() {
        Ok(permit) => return Some(permit),
        Err(waiting) => waiting,
    };
    let as_int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    reporter
        .send(&TaskQueued {
            envelope: reporter.envelope::<TaskQueued>(),
            task_id: task.task_id.clone(),
            position: as_int(waiting.position),
            max_concurrent: as_int(slots.max()),
        })
        .await;
    tokio::select! {
        permit = waiting.turn() => Some(permit),
        _ = cancel.cancelled() => {
            reporter
                .send(&TaskCancelled {
                    envelope: reporter.envelope::<TaskCancelled>(),
                    task_id: task.task_id.clone(),
                    was_running: false,
                    duration_ms: 0,
                })
                .await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_limit_tasks_wait_in_order() {
        let slots = Slots::new(2);
        let a = slots.take().expect("first slot");
        let _b = slots.take().expect("second slot");
        let third = slots.take().expect_err("third waits");
        assert_eq!(third.position, 1);
        let fourth = slots.take().expect_err("fourth waits");
        assert_eq!(fourth.position, 2);
        drop(a);
        // The freed slot goes to the first in line.
        let permit = third.turn().await;
        assert!(slots.take().is_err(), "no slot is free while one waits");
        drop(permit);
        let _p = fourth.turn().await;
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
        let unlimited = Slots::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.take().expect("slot")).collect();
        assert_eq!(held.len(), 100);
    }
}
