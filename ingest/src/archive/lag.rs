//! How far the archive is behind a stream, judged from outside the archiver (so a stopped
//! archiver shows too): the age of the oldest event the stream holds that no sealed file
//! has, against the stream's `max_age` — past it, JetStream drops the event unarchived.
//!
//! [`Archive::last_seq`]: super::Archive::last_seq

use async_nats::jetstream;

/// The archive against one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Behind {
    pub stream: String,
    /// Age of the oldest event not sealed yet (0: every event is sealed).
    pub lag_secs: u64,
    /// The stream's `max_age` (0: it keeps events forever).
    pub max_age_secs: u64,
    /// Events the stream dropped before they were sealed.
    pub lost: u64,
}

impl Behind {
    /// The lag as a share of `max_age`, in percent: 100 once events were lost; 0 for a stream
    /// that keeps everything.
    pub fn pct(&self) -> f64 {
        if self.lost > 0 {
            return 100.0;
        }
        match self.max_age_secs {
            0 => 0.0,
            max => (100.0 * self.lag_secs as f64 / max as f64).min(100.0),
        }
    }
}

/// The archive's lag behind `stream` at `now_ms`, given the last sequence sealed
/// ([`Archive::last_seq`]).
pub async fn behind(
    js: &jetstream::Context,
    stream: &str,
    sealed: u64,
    now_ms: i64,
) -> Result<Behind, String> {
    let mut handle = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let info = handle.info().await.map_err(|e| e.to_string())?;
    let (state, max_age) = (info.state.clone(), info.config.max_age);
    let mut behind = Behind {
        stream: stream.to_owned(),
        lag_secs: 0,
        max_age_secs: max_age.as_secs(),
        lost: 0,
    };
    let next = sealed + 1;
    if state.messages == 0 || state.last_sequence < next {
        return Ok(behind);
    }
    let oldest_ms = if next < state.first_sequence {
        behind.lost = state.first_sequence - next;
        state.first_timestamp.unix_timestamp_nanos() / 1_000_000
    } else {
        let msg = handle
            .get_raw_message(next)
            .await
            .map_err(|e| format!("event {next}: {e}"))?;
        msg.time.unix_timestamp_nanos() / 1_000_000
    };
    behind.lag_secs = ((now_ms as i128 - oldest_ms).max(0) / 1000) as u64;
    Ok(behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_a_share_of_max_age_and_a_loss_is_all_of_it() {
        let b = |lag_secs, max_age_secs, lost| Behind {
            stream: "S".into(),
            lag_secs,
            max_age_secs,
            lost,
        };
        assert_eq!(b(3_600, 7 * 86_400, 0).pct(), 100.0 / 168.0);
        assert_eq!(b(10, 20, 0).pct(), 50.0);
        assert_eq!(b(30, 20, 0).pct(), 100.0);
        assert_eq!(b(0, 20, 5).pct(), 100.0);
        assert_eq!(b(99_999, 0, 0).pct(), 0.0, "a stream that keeps everything");
    }
}
