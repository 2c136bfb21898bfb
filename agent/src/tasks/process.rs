//! Process-tree control for work the agent runs: a command becomes the leader of its own process
//! group, so signalling the group reaches everything it started; resource limits are applied in
//! the child before exec; users are looked up in `/etc/passwd`.

// `kill` of a process group and `setrlimit` in the child need libc; each use is commented.
#![allow(unsafe_code)]

/// Limits applied to a child process before it executes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_CPU`, seconds of CPU time.
    pub cpu_secs: Option<u64>,
    /// `RLIMIT_AS`, bytes of address space.
    pub address_space_bytes: Option<u64>,
}

/// Makes the command its own process group leader and applies `limits` in the child.
pub fn isolate(cmd: &mut tokio::process::Command, limits: Limits) {
    cmd.process_group(0);
    if limits == Limits::default() {
        return;
    }
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe `setrlimit`; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            if let Some(cpu) = limits.cpu_secs {
                set(libc::RLIMIT_CPU, cpu)?;
            }
            if let Some(bytes) = limits.address_space_bytes {
                set(libc::RLIMIT_AS, bytes)?;
            }
            Ok(())
        });
    }
}

/// Sends `signal` (e.g. `libc::SIGKILL`) to every process in the group `pgid`. A group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: i32) -> std::io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(std::io::Error::other("pid out of range"));
    };
    if pgid <= 1 {
        return Err(std::io::Error::other(
            "refusing to signal process group <= 1",
        ));
    }
    // SAFETY: plain syscall; a negative pid addresses the process group we created.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// `SIGTERM` and `SIGKILL`, for callers without libc.
pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// A user's uid and primary gid from `passwd` text (the format of `/etc/passwd`).
pub fn parse_passwd(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        if name != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Looks `user` up in `/etc/passwd`.
pub fn lookup_user(user: &str) -> Option<(u32, u32)> {
    parse_passwd(&std::fs::read_to_string("/etc/passwd").ok()?, user)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_in_passwd_text() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n";
        assert_eq!(parse_passwd(text, "nobody"), Some((65534, 65534)));
        assert_eq!(parse_passwd(text, "ghost"), None);
        assert_eq!(parse_passwd("broken:line", "broken"), None);
    }

    #[test]
    fn signalling_a_gone_group_is_fine_and_pid_1_is_refused() {
        assert!(signal_group(1, SIGTERM).is_err());
        // Above the kernel's largest possible pid_max (2^22): no such group.
        assert!(signal_group(2_000_000_000, SIGTERM).is_ok());
    }
}
