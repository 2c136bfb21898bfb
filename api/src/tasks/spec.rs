//! A task request checked field by field and turned into the spec the agents run, with the
//! limits it is held to.

use nerve_schemas::{EnvVar, TaskSpec};

use super::bad;
use crate::dto::tasks::CreateTask;
use crate::error::ApiError;

/// Default and largest timeout.
pub const DEFAULT_TIMEOUT_SECS: u32 = 300;
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// Default and largest output kept per node.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1 << 20;
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Default time nodes have to accept.
pub const DEFAULT_ACCEPT_DEADLINE_SECS: u32 = 30;
/// Most nodes one task may target (the request lists them: ≈ 7.4 MB at this count, within the
/// event log's 16 MB message limit).
pub const MAX_NODES: usize = 200_000;
/// Largest script body (it travels to every node with each offer).
pub const MAX_SCRIPT_BYTES: usize = 256 << 10;

/// Whether `name` can name an executable in the agents' hooks directory.
fn hook_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a request and turns it into the spec the agents run.
pub fn validate(req: &CreateTask) -> Result<TaskSpec, ApiError> {
    let mut spec = TaskSpec {
        kind: req.kind.clone(),
        working_dir: req.working_dir.clone(),
        run_as: req.run_as.clone(),
        ..TaskSpec::default()
    };
    match req.kind.as_str() {
        "command" => {
            if req.argv.is_empty() || req.argv[0].is_empty() {
                return Err(bad("command: argv must name a program"));
            }
            spec.argv = req.argv.clone();
        }
        "script" => {
            if req.script.trim().is_empty() {
                return Err(bad("script: the body is empty"));
            }
            if req.script.len() > MAX_SCRIPT_BYTES {
                return Err(bad(format!("script: at most {MAX_SCRIPT_BYTES} bytes")));
            }
            spec.script = req.script.clone();
            spec.interpreter = if req.interpreter.is_empty() {
                "/bin/sh".into()
            } else {
                req.interpreter.clone()
            };
        }
        "hook" => {
            if !hook_name_ok(&req.hook) {
                return Err(bad(format!(
                    "hook: {:?} is not a hook name ([A-Za-z0-9._-], not starting with '.')",
                    req.hook
                )));
            }
            spec.hook = req.hook.clone();
            spec.args = req.args.clone();
        }
        "health" => {
            let known = match req.check.as_str() {
                "gpu" | "dcgm" => true,
                other => other.strip_prefix("hook:").is_some_and(hook_name_ok),
            };
            if !known {
                return Err(bad(format!(
                    "health: check {:?} is not gpu, dcgm or hook:<name>",
                    req.check
                )));
            }
            spec.hook = req.check.clone();
            spec.args = req.args.clone();
        }
        "" => return Err(bad("kind is required: command, script, hook or health")),
        other => {
            return Err(bad(format!(
                "unknown kind {other:?}: expected command, script, hook or health"
            )));
        }
    }
    if req.kind != "command" && !req.argv.is_empty() {
        return Err(bad("argv belongs to kind command"));
    }
    if req.kind != "hook" && req.kind != "health" && !req.args.is_empty() {
        return Err(bad("args belong to kinds hook and health"));
    }
    if req.kind != "health" && !req.check.is_empty() {
        return Err(bad("check belongs to kind health"));
    }
    for name in req.env.keys() {
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(bad(format!("env: {name:?} is not a variable name")));
        }
    }
    spec.env = req
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let timeout = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if timeout == 0 || timeout > MAX_TIMEOUT_SECS {
        return Err(bad(format!(
            "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    spec.timeout_secs = timeout as i32;
    let max_output = req.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    if max_output > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "max_output_bytes must be at most {MAX_OUTPUT_BYTES}"
        )));
    }
    spec.max_output_bytes = max_output as i64;
    let positive = |name: &str, v: Option<u64>| match v {
        Some(0) => Err(bad(format!("{name} must be positive"))),
        Some(v) => i64::try_from(v)
            .map(Some)
            .map_err(|_| bad(format!("{name} is too large"))),
        None => Ok(None),
    };
    spec.cpu_limit_secs = positive("cpu_limit_secs", req.cpu_limit_secs)?;
    spec.memory_limit_bytes = positive("memory_limit_bytes", req.memory_limit_bytes)?;
    Ok(spec)
}
