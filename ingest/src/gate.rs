//! The change gate: a request that may change something runs inside a [`Gate`], and every
//! change made on its behalf — an event published through [`crate::EventLog`], a message sent
//! to agents, a notification sent out — first calls [`pass`]. The first pass runs the gate's
//! check once (the API writes the request's audit entry there); if the check fails, that change
//! and every later one is refused, so nothing changes without its audit entry. Outside a gate
//! (the projectors, the agent, the evaluator) [`pass`] lets everything through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Check =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The check a scope's changes wait for, run at most once.
#[derive(Clone)]
pub struct Gate(Arc<Inner>);

struct Inner {
    check: Check,
    outcome: tokio::sync::OnceCell<Result<(), String>>,
    /// Where each change's event landed: (stream, sequence).
    positions: std::sync::Mutex<Vec<(String, u64)>>,
}

tokio::task_local! {
    static CURRENT: Gate;
}

impl Gate {
    /// A gate whose first [`pass`] runs `check`.
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self(Arc::new(Inner {
            check: Box::new(move || Box::pin(check())),
            outcome: tokio::sync::OnceCell::new(),
            positions: std::sync::Mutex::default(),
        }))
    }

    /// Runs `work` with this gate as the current one.
    pub async fn scope<T>(&self, work: impl Future<Output = T>) -> T {
        CURRENT.scope(self.clone(), work).await
    }

    /// Whether a change asked to pass (and so the check ran), and with what outcome.
    pub fn outcome(&self) -> Option<&Result<(), String>> {
        self.0.outcome.get()
    }

    /// Where the events published inside this gate landed, in order: (stream, sequence).
    pub fn positions(&self) -> Vec<(String, u64)> {
        self.0
            .positions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    async fn pass(&self) -> Result<(), String> {
        self.0
            .outcome
            .get_or_init(|| (self.0.check)())
            .await
            .clone()
    }
}

/// A change the current gate refused, with the check's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the change was refused: {0}")]
pub struct Refused(pub String);

/// Called before a change: runs the current gate's check (once per gate) and answers whether
/// the change may be made. Without a current gate, always yes.
pub async fn pass() -> Result<(), Refused> {
    let Ok(gate) = CURRENT.try_with(Gate::clone) else {
        return Ok(());
    };
    gate.pass().await.map_err(Refused)
}

/// Records that a change's event landed at `sequence` of `stream` (with the current gate, if
/// any), so the caller can be answered once it is applied.
pub fn landed(stream: &str, sequence: u64) {
    let _ = CURRENT.try_with(|gate| {
        if let Ok(mut p) = gate.0.positions.lock() {
            p.push((stream.to_owned(), sequence));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_check_runs_once_at_the_first_change_and_its_failure_refuses_every_change() {
        assert!(pass().await.is_ok(), "outside a gate everything passes");

        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let gate = Gate::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        });
        assert!(gate.outcome().is_none());
        gate.scope(async {
            pass().await.expect("first");
            pass().await.expect("second");
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(gate.outcome(), Some(&Ok(())));

        let closed = Gate::new(|| async { Err("audit stream down".to_owned()) });
        closed
            .scope(async {
                assert!(matches!(pass().await, Err(Refused(_))));
                assert!(pass().await.is_err());
            })
            .await;
        let untouched = Gate::new(|| async { Ok(()) });
        untouched.scope(async {}).await;
        assert!(untouched.outcome().is_none(), "no change, no check");
    }
}
