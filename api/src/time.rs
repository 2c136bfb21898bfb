//! The API's times: RFC 3339 out, Unix seconds or RFC 3339 (and durations for steps) in.

use std::time::{Duration, UNIX_EPOCH};

use crate::error::ApiError;

/// `ms` (Unix milliseconds) as RFC 3339, to the second.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `secs` (Unix seconds) as RFC 3339.
pub fn rfc3339_s(secs: u64) -> String {
    rfc3339_ms(secs.saturating_mul(1000))
}

/// `ms` (Unix milliseconds) as RFC 3339, to the millisecond.
pub fn rfc3339_exact(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses a time given as Unix seconds or RFC 3339 into Unix seconds.
pub fn parse_time(name: &str, text: &str) -> Result<u64, ApiError> {
    parse_time_ms(name, text).map(|ms| ms / 1000)
}

/// Parses a time given as Unix seconds or RFC 3339 (fractions of a second kept) into Unix
/// milliseconds.
pub fn parse_time_ms(name: &str, text: &str) -> Result<u64, ApiError> {
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1000).ok_or_else(|| {
            ApiError::BadRequest(format!("{name}={text:?} is too far in the future"))
        });
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}={text:?} is neither Unix seconds nor an RFC 3339 time"
            ))
        })
}

/// Parses a step given as seconds or a duration like `30s`, `5m`, `1h`.
pub fn parse_step(text: &str) -> Result<u64, ApiError> {
    let secs = match text.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "step={text:?} is neither seconds nor a duration like 30s, 5m or 1h"
                ))
            })?
            .as_secs(),
    };
    if secs == 0 {
        return Err(ApiError::BadRequest(
            "step must be at least 1 second".into(),
        ));
    }
    Ok(secs)
}

/// Now, in milliseconds since the epoch (the platform clock, as the unsigned type queries use).
pub fn now_ms() -> u64 {
    nerve_platform::now_ms().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps_parse_or_explain() {
        assert_eq!(parse_time("from", "1700000000").ok(), Some(1_700_000_000));
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20Z").ok(),
            Some(1_700_000_000)
        );
        assert!(parse_time("from", "yesterday").is_err());
        assert_eq!(
            parse_time_ms("at", "2023-11-14T22:13:20.250Z").ok(),
            Some(1_700_000_000_250)
        );
        assert_eq!(rfc3339_exact(1_700_000_000_250), "2023-11-14T22:13:20.250Z");
        assert_eq!(parse_step("60").ok(), Some(60));
        assert_eq!(parse_step("5m").ok(), Some(300));
        assert!(parse_step("0").is_err());
        assert!(parse_step("soon").is_err());
    }
}
