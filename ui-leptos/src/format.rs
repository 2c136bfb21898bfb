//! Number and time formatting shared by the pages (deterministic, so server and browser render
//! the same text).

/// `1.5 GiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1.2 MB/s` style rate in bytes per second.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec))
}

/// `42 %`.
pub fn pct(v: f64) -> String {
    format!("{:.0} %", v.clamp(0.0, 100.0))
}

/// Share in percent, 0 when the total is 0.
pub fn share(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        (100.0 * used / total).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// `2026-11-22 03:45:08` from RFC 3339 `2026-11-22T03:45:08Z`.
pub fn time(rfc3339: &str) -> String {
    rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `3 d 4 h`, `5 h 10 min`, `12 min`.
pub fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

/// `HH:MM` (UTC) of a Unix time, for chart axes.
pub fn clock(unix_secs: u64) -> String {
    format!(
        "{:02}:{:02}",
        unix_secs % 86_400 / 3600,
        unix_secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(24.0 * 1024.0 * 1024.0 * 1024.0), "24.0 GiB");
        assert_eq!(pct(123.0), "100 %");
        assert_eq!(share(1.0, 0.0), 0.0);
        assert_eq!(time("2026-11-22T03:45:08Z"), "2026-11-22 03:45:08");
        assert_eq!(duration(90_061), "1 d 1 h");
        assert_eq!(duration(3_900), "1 h 5 min");
        assert_eq!(clock(1_795_319_108), "03:45");
    }
}
