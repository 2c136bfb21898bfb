//! What the connections benchmark reads of processes: the open-files limit it raises, and
//! each process's resident memory and open descriptors from `/proc`.

/// Raises this process's soft open-files limit to at least `want` (inherited by the servers and
/// workers it starts).
#[allow(unsafe_code)] // two libc calls on a local struct
pub(crate) fn raise_open_files(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        anyhow::ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0,
            "getrlimit: {}",
            std::io::Error::last_os_error()
        );
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        anyhow::ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0,
            "cannot raise the open-files limit from {} to {want} ({}); lower \
             --agents-per-server/--agents-per-process or raise `ulimit -Hn`",
            lim.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
    Ok(want)
}

pub(super) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub(super) fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}
