//! Where a task's processes live. Under systemd the agent's unit carries the agent's own limits
//! (memory, CPU); a task started as the agent's child would share them. With `agent.task_scope`
//! `systemd` (or `auto` under systemd, as root, with `systemd-run` installed) each task runs in
//! a transient scope of its own in `nerve-tasks.slice` — `systemd-run --scope` creates it and
//! then executes the command in place (same process, so the agent's process-group signals and
//! output pipes still reach it) — with the task's memory limit as the scope's `MemoryMax`, and
//! `run_as` applied by `systemd-run --uid/--gid`. `none`: a plain child (tests, containers).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The slice task scopes go into (`infra/systemd/nerve-tasks.slice`).
pub const SLICE: &str = "nerve-tasks.slice";

/// How tasks are placed, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A child of the agent (its cgroup, its limits).
    Child,
    /// A transient systemd scope per task, started by this `systemd-run`.
    Systemd { systemd_run: PathBuf },
}

/// A command to run: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// What a scope is made with, beyond the command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeLimits {
    /// The task's `memory_limit_bytes`: the scope's `MemoryMax`.
    pub memory_max_bytes: Option<u64>,
    /// `run_as`, resolved.
    pub user: Option<(u32, u32)>,
}

impl Scope {
    /// `agent.task_scope`: `auto`, `systemd` or `none`. `systemd` without systemd is an error
    /// at start, never a silent fallback; `auto` takes a scope where one can be had.
    pub fn of(setting: &str, path: Option<&std::ffi::OsStr>) -> Result<Self, String> {
        let found = path.and_then(|p| find_in(p, "systemd-run"));
        let under_systemd = Path::new("/run/systemd/system").is_dir();
        match setting {
            "none" => Ok(Self::Child),
            "auto" => Ok(match found {
                Some(systemd_run) if under_systemd && super::process::is_root() => {
                    Self::Systemd { systemd_run }
                }
                _ => Self::Child,
            }),
            "systemd" => {
                let systemd_run =
                    found.ok_or("agent.task_scope = systemd: no systemd-run on PATH")?;
                if !under_systemd {
                    return Err("agent.task_scope = systemd: systemd is not running here".into());
                }
                if !super::process::is_root() {
                    return Err("agent.task_scope = systemd: the agent must run as root".into());
                }
                Ok(Self::Systemd { systemd_run })
            }
            other => Err(format!(
                "agent.task_scope {other:?}: expected auto, systemd or none"
            )),
        }
    }

    /// `argv` as this scope runs it for task `task_id`: unchanged for a child; for systemd,
    /// `systemd-run --scope … -- argv`. Whether the caller must still set the user and the
    /// address-space limit itself is [`Scope::applies_user_and_memory`].
    pub fn wrap(&self, task_id: &str, argv: Argv, limits: ScopeLimits) -> Argv {
        let Self::Systemd { systemd_run } = self else {
            return argv;
        };
        let mut args: Vec<OsString> = [
            "--scope",
            "--quiet",
            "--collect",
            &format!("--slice={SLICE}"),
            &format!("--unit=nerve-task-{}", unit_safe(task_id)),
            "--property=Delegate=no",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if let Some(bytes) = limits.memory_max_bytes {
            args.push(format!("--property=MemoryMax={bytes}").into());
        }
        if let Some((uid, gid)) = limits.user {
            args.push(format!("--uid={uid}").into());
            args.push(format!("--gid={gid}").into());
        }
        args.push("--".into());
        args.push(argv.program);
        args.extend(argv.args);
        Argv {
            program: systemd_run.clone().into_os_string(),
            args,
        }
    }

    /// A scope sets the user (`--uid`) and bounds memory by cgroup; a child needs both set on
    /// the process (uid/gid, `RLIMIT_AS`).
    pub fn applies_user_and_memory(&self) -> bool {
        matches!(self, Self::Systemd { .. })
    }
}

/// A unit name part: task ids are UUIDs, but anything else becomes `_`.
fn unit_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn find_in(path: &std::ffi::OsStr, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(program: &str, args: &[&str]) -> Argv {
        Argv {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn a_child_runs_the_command_as_it_is() {
        let a = argv("/bin/echo", &["hi"]);
        assert_eq!(Scope::Child.wrap("t", a.clone(), ScopeLimits::default()), a);
        assert!(!Scope::Child.applies_user_and_memory());
    }

    #[test]
    fn a_scope_runs_it_through_systemd_run_with_the_tasks_limits_and_user() {
        let scope = Scope::Systemd {
            systemd_run: "/usr/bin/systemd-run".into(),
        };
        let wrapped = scope.wrap(
            "0199-ab/c",
            argv("/bin/sh", &["-c", "id"]),
            ScopeLimits {
                memory_max_bytes: Some(1 << 30),
                user: Some((1000, 1001)),
            },
        );
        assert_eq!(wrapped.program, "/usr/bin/systemd-run");
        let args: Vec<&str> = wrapped.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--scope",
                "--quiet",
                "--collect",
                "--slice=nerve-tasks.slice",
                "--unit=nerve-task-0199-ab_c",
                "--property=Delegate=no",
                "--property=MemoryMax=1073741824",
                "--uid=1000",
                "--gid=1001",
                "--",
                "/bin/sh",
                "-c",
                "id"
            ]
        );
        assert!(scope.applies_user_and_memory());
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(Scope::of("none", None), Ok(Scope::Child));
        assert!(
            Scope::of("cgroup", None)
                .unwrap_err()
                .contains("expected auto")
        );
        let err = Scope::of("systemd", Some("/nonexistent".as_ref())).unwrap_err();
        assert!(err.contains("no systemd-run"), "{err}");
        // auto without systemd-run: a plain child.
        assert_eq!(
            Scope::of("auto", Some("/nonexistent".as_ref())),
            Ok(Scope::Child)
        );
    }
}
