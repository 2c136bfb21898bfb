//! The agent's task runner. It answers dispatch requests on the node's core NATS subject
//! (`nerve.v1.dispatch.<node>`), runs each task as its own process group (so a timeout or a
//! cancel kills the whole tree), streams output in numbered chunks up to the task's byte limit,
//! and reports every step — accepted, started, output, finished / timed out / cancelled — as
//! events through the outbox, so they survive NATS outages like heartbeats do.
//!
//! A dispatch that repeats (the dispatcher retries when a reply is lost) is answered again
//! without running the task twice. The node holds its tasks to its own rules ([`Rules`]): at
//! most so many at once (the rest queued, [`slots`]), a default and a longest timeout, and each
//! task's own directory, cleaned up after it ends ([`dirs`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nerve_ingest::offer::{Claimed, OfferVerifier, Refusal};
use nerve_platform::config::AgentConfig;
use nerve_schemas::{
    Envelope, Event, TaskAccepted, TaskCancelled, TaskDispatched, TaskFinished, TaskOfferRefused,
    TaskOutputProduced, TaskSpec, TaskStarted, TaskTimedOut, subjects,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::publisher::Outgoing;

pub mod dirs;
pub mod health;
mod output;
pub mod process;
pub mod scope;
pub mod slots;

use output::{Output, pipe_output};
use process::Limits;
use scope::{Argv, Scope, ScopeLimits};
use slots::Slots;

/// What this node holds every task to (`agent.*`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub hooks_dir: PathBuf,
    /// The agent's state directory (health checks keep the GPUs seen there).
    pub state_dir: PathBuf,
    /// Where each task's own directory is made ([`dirs::root`]).
    pub tasks_root: PathBuf,
    pub max_concurrent: usize,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    pub dir_keep: Duration,
    /// Where task processes live ([`scope`]).
    pub scope: Scope,
}

impl Rules {
    /// The node's rules; an `agent.task_scope` this machine cannot honour is an error.
    pub fn of(config: &AgentConfig) -> Result<Self, String> {
        Ok(Self {
            hooks_dir: config.hooks_dir.clone(),
            state_dir: config.state_dir.clone(),
            tasks_root: dirs::root(&config.state_dir),
            max_concurrent: config.max_concurrent_tasks,
            default_timeout_secs: config.task_default_timeout_secs.max(1),
            max_timeout_secs: config.task_max_timeout_secs.max(1),
            dir_keep: Duration::from_secs(config.task_dir_keep_secs),
            scope: Scope::of(&config.task_scope, std::env::var_os("PATH").as_deref())?,
        })
    }

    /// The timeout a task runs under: its own, or the default when it names none, never
    /// longer than the node allows.
    pub fn timeout_secs(&self, spec: &TaskSpec) -> u64 {
        match u64::try_from(spec.timeout_secs) {
            Ok(t) if t > 0 => t.min(self.max_timeout_secs),
            _ => self.default_timeout_secs.min(self.max_timeout_secs),
        }
    }
}

/// Bytes per output event at most.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Task ids remembered to answer repeated dispatches.
const REMEMBERED: usize = 4096;
/// After SIGTERM on cancel, how long before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// The command to run, in the task's own directory under `rules.tasks_root` (made here), in
/// the task's scope ([`scope`]); why a task could not be prepared is reported as
/// `TaskFinished { error }`.
fn prepare(
    spec: &TaskSpec,
    rules: &Rules,
    task_id: &str,
) -> Result<tokio::process::Command, String> {
    let user = match spec.run_as.as_str() {
        "" => None,
        name if !process::is_root() => {
            return Err(format!("run_as {name:?}: the agent does not run as root"));
        }
        name => Some(
            process::lookup_user(name)
                .ok_or_else(|| format!("run_as: no user {name:?} on this node"))?,
        ),
    };
    let task_dir = dirs::create(&rules.tasks_root, task_id, user)?;
    let argv = match spec.kind.as_str() {
        "command" => {
            let (program, args) = spec.argv.split_first().ok_or("command: argv is empty")?;
            Argv {
                program: program.into(),
                args: args.iter().map(Into::into).collect(),
            }
        }
        "script" => {
            if spec.interpreter.is_empty() {
                return Err("script: no interpreter".into());
            }
            let path = task_dir.join("script");
            std::fs::write(&path, &spec.script).map_err(|e| format!("{}: {e}", path.display()))?;
            Argv {
                program: (&spec.interpreter).into(),
                args: vec![path.into_os_string()],
            }
        }
        "hook" => {
            let name = &spec.hook;
            if !valid_hook_name(name) {
                return Err(format!("hook: invalid name {name:?}"));
            }
            let path = rules.hooks_dir.join(name);
            if !path.is_file() {
                return Err(format!("hook: no {} on this node", path.display()));
            }
            Argv {
                program: path.into_os_string(),
                args: spec.args.iter().map(Into::into).collect(),
            }
        }
        other => return Err(format!("unknown task kind {other:?}")),
    };
    let memory = spec.memory_limit_bytes.and_then(|v| u64::try_from(v).ok());
    let argv = rules.scope.wrap(
        task_id,
        argv,
        ScopeLimits {
            memory_max_bytes: memory,
            user,
        },
    );
    let in_scope = rules.scope.applies_user_and_memory();
    let mut cmd = tokio::process::Command::new(argv.program);
    cmd.args(argv.args);
    if let Some((uid, gid)) = user.filter(|_| !in_scope) {
        cmd.uid(uid).gid(gid);
    }
    let dir = if spec.working_dir.is_empty() {
        task_dir
    } else {
        PathBuf::from(&spec.working_dir)
    };
    cmd.current_dir(dir)
        .envs(spec.env.iter().map(|e| (e.name.as_str(), e.value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    process::isolate(
        &mut cmd,
        Limits {
            cpu_secs: spec.cpu_limit_secs.and_then(|v| u64::try_from(v).ok()),
            // In a scope, memory is bounded by the cgroup (systemd-run itself must load).
            address_space_bytes: memory.filter(|_| !in_scope),
        },
    );
    Ok(cmd)
}

/// Whether `name` can name an executable in the hooks directory: `[A-Za-z0-9._-]`, not starting
/// with `.` (so never a path).
fn valid_hook_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Turns events into outbox entries on the node's task subject.
#[derive(Clone)]
struct Reporter {
    node_id: String,
    tx: mpsc::Sender<Outgoing>,
}

impl Reporter {
    fn envelope<E: Event>(&self) -> Envelope {
        Envelope::new::<E>(self.node_id.clone(), nerve_platform::now_ms())
    }

    async fn send<E: Event>(&self, event: &E) -> bytes::Bytes {
        self.send_on(subjects::task_node(&self.node_id), event)
            .await
    }

    /// [`Reporter::send`] on another of the node's subjects.
    async fn send_on<E: Event>(&self, subject: String, event: &E) -> bytes::Bytes {
        let out = match Outgoing::event(subject, event) {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %e, "task event does not encode");
                return bytes::Bytes::new();
            }
        };
        let payload = out.payload.clone();
        if self.tx.send(out).await.is_err() {
            tracing::warn!("publisher stopped; task event not queued");
        }
        payload
    }
}

/// Running tasks by id (their cancel switches) and the ids already accepted.
#[derive(Default)]
struct Ledger {
    running: HashMap<String, CancellationToken>,
    seen: VecDeque<String>,
}

impl Ledger {
    fn already_seen(&self, id: &str) -> bool {
        self.seen.iter().any(|s| s == id)
    }

    fn remember(&mut self, id: &str) {
        if self.seen.len() >= REMEMBERED {
            self.seen.pop_front();
        }
        self.seen.push_back(id.to_owned());
    }
}

/// Reports an offer the agent would not open (nothing runs, nothing is answered).
async fn refuse(reporter: &Reporter, payload: &[u8], reason: Refusal, claimed: Claimed) {
    let task_id = nerve_schemas::decode::<TaskDispatched>(payload)
        .map(|t| t.task_id)
        .unwrap_or_default();
    tracing::warn!(
        task_id,
        reason = reason.as_str(),
        signer = %claimed.signer,
        "task offer refused"
    );
    let refused = TaskOfferRefused {
        envelope: reporter.envelope::<TaskOfferRefused>(),
        task_id,
        offer_id: claimed.offer_id,
        reason: reason.as_str().to_owned(),
        signer: claimed.signer,
    };
    reporter.send(&refused).await;
}

/// Answers dispatches and cancellations for `node_id` until `cancel`; opens only offers
/// `verifier` trusts.
pub async fn serve(
    client: async_nats::Client,
    node_id: String,
    rules: Rules,
    tx: mpsc::Sender<Outgoing>,
    verifier: Arc<OfferVerifier>,
    cancel: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut dispatches = client.subscribe(subjects::dispatch(&node_id)).await?;
    let mut cancels = client.subscribe(subjects::cancel(&node_id)).await?;
    let reporter = Reporter { node_id, tx };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let rules = Arc::new(rules);
    let slots = Arc::new(Slots::new(rules.max_concurrent));
    tokio::spawn(dirs::sweep_loop(
        rules.clone(),
        ledger.clone(),
        cancel.clone(),
    ));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(msg) = dispatches.next() => {
                let now = nerve_platform::now_ms();
                if let Err((reason, claimed)) =
                    verifier.verify(&msg.subject, msg.headers.as_ref(), &msg.payload, now)
                {
                    refuse(&reporter, &msg.payload, reason, claimed).await;
                    continue;
                }
                let task = match nerve_schemas::decode::<TaskDispatched>(&msg.payload) {
                    Ok(t) if t.envelope.node_id == reporter.node_id => t,
                    Ok(t) => {
                        tracing::warn!(node = %t.envelope.node_id, "dispatch for another node ignored");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable dispatch ignored");
                        continue;
                    }
                };
                let first_time = {
                    let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
                    let first = !l.already_seen(&task.task_id);
                    if first {
                        l.remember(&task.task_id);
                    }
                    first
                };
                let accepted = TaskAccepted {
                    envelope: reporter.envelope::<TaskAccepted>(),
                    task_id: task.task_id.clone(),
                };
                let reply = if first_time {
                    reporter.send(&accepted).await
                } else {
                    nerve_schemas::encode(&accepted)
                        .unwrap_or_default()
                        .into()
                };
                if let Some(to) = msg.reply
                    && let Err(e) = client.publish(to, reply).await
                {
                    tracing::warn!(error = %e, "dispatch reply not sent; the dispatcher retries");
                }
                if first_time {
                    let token = cancel.child_token();
                    ledger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .running
                        .insert(task.task_id.clone(), token.clone());
                    let (reporter, ledger, rules, slots) =
                        (reporter.clone(), ledger.clone(), rules.clone(), slots.clone());
                    tokio::spawn(async move {
                        if let Some(_slot) = slots::turn(&reporter, &task, &slots, &token).await {
                            match task.spec.kind.as_str() {
                                "health" => {
                                    health::run(&reporter, &task, &rules, &rules.state_dir, token)
                                        .await
                                }
                                _ => run(&reporter, &task, &rules, token).await,
                            }
                        }
                        dirs::ended(&rules.tasks_root, &task.task_id, rules.dir_keep);
                        ledger
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .running
                            .remove(&task.task_id);
                    });
                }
            }
            Some(msg) = cancels.next() => {
                let task_id = String::from_utf8_lossy(&msg.payload).trim().to_owned();
                let token = ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .running
                    .get(&task_id)
                    .cloned();
                match token {
                    Some(t) => t.cancel(),
                    None => tracing::debug!(task_id, "cancel for a task not running here"),
                }
            }
        }
    }
    Ok(())
}

/// How a run ended.
enum End {
    Exited(std::process::ExitStatus),
    TimedOut,
    Cancelled,
}

/// Runs one task to its end and reports it.
async fn run(reporter: &Reporter, task: &TaskDispatched, rules: &Rules, cancel: CancellationToken) {
    let started = Instant::now();
    let spec = &task.spec;
    let timeout_secs = rules.timeout_secs(spec);
    let mut child = match prepare(spec, rules, &task.task_id)
        .and_then(|mut cmd| cmd.spawn().map_err(|e| format!("cannot start: {e}")))
    {
        Ok(c) => c,
        Err(error) => {
            reporter.send(&finished(reporter, task, error)).await;
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    reporter
        .send(&TaskStarted {
            envelope: reporter.envelope::<TaskStarted>(),
            task_id: task.task_id.clone(),
            pid: i64::from(pid),
        })
        .await;

    let mut chunks = pipe_output(&mut child);
    let mut output = Output::new(u64::try_from(spec.max_output_bytes).unwrap_or(0));
    let timeout = tokio::time::sleep(Duration::from_secs(timeout_secs));
    tokio::pin!(timeout);
    let mut end: Option<End> = None;
    let mut pipes_open = true;
    // Until the process ended and both pipes are drained.
    while end.is_none() || pipes_open {
        tokio::select! {
            chunk = chunks.recv(), if pipes_open => {
                let Some((stream, data)) = chunk else {
                    pipes_open = false;
                    continue;
                };
                let Some((seq, data)) = output.take(&data) else {
                    continue;
                };
                reporter
                    .send(&TaskOutputProduced {
                        envelope: reporter.envelope::<TaskOutputProduced>(),
                        task_id: task.task_id.clone(),
                        stream: stream.to_owned(),
                        seq,
                        data: data.to_vec(),
                    })
                    .await;
            }
            status = child.wait(), if end.is_none() => {
                end = Some(match status {
                    Ok(s) => End::Exited(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting for a task failed");
                        End::Cancelled
                    }
                });
                // Whatever the process left behind in its group goes with it, so pipes close.
                let _ = process::signal_group(pid, process::SIGKILL);
            }
            _ = &mut timeout, if end.is_none() => {
                let _ = process::signal_group(pid, process::SIGKILL);
                let _ = child.wait().await;
                end = Some(End::TimedOut);
            }
            _ = cancel.cancelled(), if end.is_none() => {
                let _ = process::signal_group(pid, process::SIGTERM);
                if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
                    let _ = process::signal_group(pid, process::SIGKILL);
                    let _ = child.wait().await;
                }
                end = Some(End::Cancelled);
            }
        }
    }
    report_end(reporter, task, end, started, &output, timeout_secs).await;
}

/// `TaskFinished` for a task that did not get to run, with the reason.
fn finished(reporter: &Reporter, task: &TaskDispatched, error: String) -> TaskFinished {
    TaskFinished {
        envelope: reporter.envelope::<TaskFinished>(),
        task_id: task.task_id.clone(),
        exit_code: None,
        signal: None,
        duration_ms: 0,
        output_bytes: 0,
        truncated: false,
        error,
    }
}

/// Reports how the task ended.
async fn report_end(
    reporter: &Reporter,
    task: &TaskDispatched,
    end: Option<End>,
    started: Instant,
    output: &Output,
    timeout_secs: u64,
) {
    let duration_ms = started.elapsed().as_millis().min(i64::MAX as u128) as i64;
    let output_bytes = output.total.min(i64::MAX as u64) as i64;
    let truncated = output.truncated;
    match end {
        Some(End::Exited(status)) => {
            use std::os::unix::process::ExitStatusExt;
            reporter
                .send(&TaskFinished {
                    exit_code: status.code(),
                    signal: status.signal(),
                    duration_ms,
                    output_bytes,
                    truncated,
                    ..finished(reporter, task, String::new())
                })
                .await;
        }
        Some(End::TimedOut) => {
            reporter
                .send(&TaskTimedOut {
                    envelope: reporter.envelope::<TaskTimedOut>(),
                    task_id: task.task_id.clone(),
                    timeout_secs: i32::try_from(timeout_secs).unwrap_or(i32::MAX),
                    duration_ms,
                    output_bytes,
                    truncated,
                })
                .await;
        }
        Some(End::Cancelled) | None => {
            reporter
                .send(&TaskCancelled {
                    envelope: reporter.envelope::<TaskCancelled>(),
                    task_id: task.task_id.clone(),
                    was_running: true,
                    duration_ms,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str) -> TaskSpec {
        TaskSpec {
            kind: kind.into(),
            timeout_secs: 10,
            max_output_bytes: 1 << 20,
            ..TaskSpec::default()
        }
    }

    #[test]
    fn bad_specs_are_explained() {
        let dir = tempfile::tempdir().expect("tmp");
        let rules = Rules {
            hooks_dir: dir.path().into(),
            tasks_root: dir.path().into(),
            ..Rules::of(&AgentConfig::default()).expect("rules")
        };
        let err = |s: TaskSpec| prepare(&s, &rules, "t").err().unwrap_or_default();
        assert!(err(spec("command")).contains("argv is empty"));
        assert!(err(spec("script")).contains("no interpreter"));
        assert!(err(spec("teleport")).contains("unknown task kind"));
        let hook = |name: &str| TaskSpec {
            hook: name.into(),
            ..spec("hook")
        };
        assert!(err(hook("../etc/passwd")).contains("invalid name"));
        assert!(err(hook(".hidden")).contains("invalid name"));
        assert!(err(hook("drain-node")).contains("no "));
        let run_as = TaskSpec {
            argv: vec!["true".into()],
            run_as: "no-such-user-here".into(),
            ..spec("command")
        };
        assert!(err(run_as).contains("run_as"));
    }

    #[test]
    fn repeated_dispatches_are_remembered_within_bounds() {
        let mut l = Ledger::default();
        for i in 0..(REMEMBERED + 10) {
            l.remember(&format!("t{i}"));
        }
        assert!(!l.already_seen("t0"), "the oldest are forgotten");
        assert!(l.already_seen(&format!("t{}", REMEMBERED + 9)));
        assert_eq!(l.seen.len(), REMEMBERED);
    }
}
