//! Task events: an operator's request, its dispatch to each node, and each node's progress and
//! result. Each mirrors its `.avsc` file field for field (checked by tests).

use serde::{Deserialize, Serialize};

use crate::events::Envelope;

/// What to run on each node, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// `command`, `script` or `hook`.
    pub kind: String,
    pub argv: Vec<String>,
    pub script: String,
    pub interpreter: String,
    pub hook: String,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub working_dir: String,
    pub run_as: String,
    pub timeout_secs: i32,
    pub max_output_bytes: i64,
    pub cpu_limit_secs: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
}

/// One environment variable of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// How a task's targets were chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSelector {
    pub node_ids: Vec<String>,
    pub labels: Vec<String>,
    pub clusters: Vec<String>,
    pub statuses: Vec<String>,
}

/// `TaskRequested` v1. The envelope's `node_id` is the task id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequested {
    pub envelope: Envelope,
    pub task_id: String,
    pub requested_by: String,
    pub spec: TaskSpec,
    pub selector: TaskSelector,
    pub expected_nodes: Vec<String>,
    /// Nodes dispatched at a time; 0: all at once.
    pub batch_size: i32,
    pub accept_deadline_secs: i32,
}
event!(TaskRequested, 1);

/// `TaskCancelRequested` v1. The envelope's `node_id` is the task id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelRequested {
    pub envelope: Envelope,
    pub task_id: String,
    pub requested_by: String,
}
event!(TaskCancelRequested, 1);

/// `TaskDispatched` v1: the task offered to one node; also the dispatch message itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDispatched {
    pub envelope: Envelope,
    pub task_id: String,
    pub attempt: i32,
    pub deadline_ms: i64,
    pub spec: TaskSpec,
}
event!(TaskDispatched, 1);

/// `TaskAccepted` v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAccepted {
    pub envelope: Envelope,
    pub task_id: String,
}
event!(TaskAccepted, 1);

/// `TaskQueued` v1: accepted, waiting for one of the node's task slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskQueued {
    pub envelope: Envelope,
    pub task_id: String,
    /// 1 runs next.
    pub position: i32,
    pub max_concurrent: i32,
}
event!(TaskQueued, 1);

/// `TaskStarted` v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub envelope: Envelope,
    pub task_id: String,
    pub pid: i64,
}
event!(TaskStarted, 1);

/// `TaskOutputProduced` v1: one chunk of output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutputProduced {
    pub envelope: Envelope,
    pub task_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Per node and task, from 0, across both streams.
    pub seq: i64,
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub data: Vec<u8>,
}
event!(TaskOutputProduced, 1);

/// `TaskFinished` v1: the process ended on its own, or could not start (`error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFinished {
    pub envelope: Envelope,
    pub task_id: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: i64,
    pub output_bytes: i64,
    pub truncated: bool,
    pub error: String,
}
event!(TaskFinished, 1);

/// `TaskTimedOut` v1: killed, with its process tree, at the timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTimedOut {
    pub envelope: Envelope,
    pub task_id: String,
    pub timeout_secs: i32,
    pub duration_ms: i64,
    pub output_bytes: i64,
    pub truncated: bool,
}
event!(TaskTimedOut, 1);

/// `TaskCancelled` v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    pub envelope: Envelope,
    pub task_id: String,
    pub was_running: bool,
    pub duration_ms: i64,
}
event!(TaskCancelled, 1);

/// `TaskUnreachable` v1: no accept before the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUnreachable {
    pub envelope: Envelope,
    pub task_id: String,
    /// `offline` or `no_accept`.
    pub reason: String,
    pub attempts: i32,
}
event!(TaskUnreachable, 1);

/// `TaskOfferRefused` v1: the agent refused an offer it could not trust; nothing ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOfferRefused {
    pub envelope: Envelope,
    pub task_id: String,
    pub offer_id: String,
    /// `unsigned`, `untrusted_key`, `bad_signature`, `replayed`, `stale` or `no_pinned_key`.
    pub reason: String,
    pub signer: String,
}
event!(TaskOfferRefused, 1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn env<E: Event>() -> Envelope {
        Envelope::new::<E>("node-1", 1_700_000_000_000)
    }

    fn spec() -> TaskSpec {
        TaskSpec {
            kind: "script".into(),
            script: "echo hi\n".into(),
            interpreter: "/bin/sh".into(),
            env: vec![EnvVar {
                name: "A".into(),
                value: "1".into(),
            }],
            timeout_secs: 60,
            max_output_bytes: 1 << 20,
            memory_limit_bytes: Some(1 << 30),
            ..TaskSpec::default()
        }
    }

    use crate::registry::assert_round_trips as check;

    #[test]
    fn every_task_event_follows_its_schema_and_round_trips() {
        let task_id = "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d".to_owned();
        check(&TaskRequested {
            envelope: env::<TaskRequested>(),
            task_id: task_id.clone(),
            requested_by: "ops".into(),
            spec: spec(),
            selector: TaskSelector {
                node_ids: vec!["node-1".into()],
                statuses: vec!["online".into()],
                ..TaskSelector::default()
            },
            expected_nodes: vec!["node-1".into()],
            batch_size: 0,
            accept_deadline_secs: 30,
        });
        check(&TaskCancelRequested {
            envelope: env::<TaskCancelRequested>(),
            task_id: task_id.clone(),
            requested_by: "ops".into(),
        });
        check(&TaskDispatched {
            envelope: env::<TaskDispatched>(),
            task_id: task_id.clone(),
            attempt: 1,
            deadline_ms: 1_700_000_090_000,
            spec: spec(),
        });
        check(&TaskAccepted {
            envelope: env::<TaskAccepted>(),
            task_id: task_id.clone(),
        });
        check(&TaskQueued {
            envelope: env::<TaskQueued>(),
            task_id: task_id.clone(),
            position: 1,
            max_concurrent: 2,
        });
        check(&TaskStarted {
            envelope: env::<TaskStarted>(),
            task_id: task_id.clone(),
            pid: 4242,
        });
        check(&TaskOutputProduced {
            envelope: env::<TaskOutputProduced>(),
            task_id: task_id.clone(),
            stream: "stdout".into(),
            seq: 0,
            data: vec![0, 159, 146, 150, b'h', b'i'],
        });
        check(&TaskFinished {
            envelope: env::<TaskFinished>(),
            task_id: task_id.clone(),
            exit_code: Some(3),
            signal: None,
            duration_ms: 12,
            output_bytes: 6,
            truncated: false,
            error: String::new(),
        });
        check(&TaskTimedOut {
            envelope: env::<TaskTimedOut>(),
            task_id: task_id.clone(),
            timeout_secs: 1,
            duration_ms: 1001,
            output_bytes: 0,
            truncated: false,
        });
        check(&TaskCancelled {
            envelope: env::<TaskCancelled>(),
            task_id: task_id.clone(),
            was_running: true,
            duration_ms: 5,
        });
        check(&TaskUnreachable {
            envelope: env::<TaskUnreachable>(),
            task_id: task_id.clone(),
            reason: "offline".into(),
            attempts: 3,
        });
        check(&TaskOfferRefused {
            envelope: env::<TaskOfferRefused>(),
            task_id,
            offer_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6f".into(),
            reason: "untrusted_key".into(),
            signer: "NABC".into(),
        });
    }
}

impl TaskFinished {
    /// Exit code 0 and no error.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.error.is_empty()
    }
}

/// How a node's part of a task ended, read from an event on the node's task subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub task_id: String,
    pub node_id: String,
    /// `succeeded`, `failed`, `timed_out`, `cancelled` or `unreachable`.
    pub state: &'static str,
}
