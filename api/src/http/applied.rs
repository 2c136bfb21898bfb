//! Read your writes. Every event a change publishes lands at a position of its stream; the
//! change is answered once the projector of that stream has applied it (its durable consumer
//! acknowledged that far), waiting at most `api.applied_wait_ms`, and the answer carries the
//! positions (`Nerve-Position: NERVE_CONTROL:42`) and whether they were applied
//! (`Nerve-Applied`). A read may ask for at least some positions (`Nerve-Min-Position`, or
//! `?min_position=`, same format): it waits for them, and is answered 503 if they are not
//! applied in time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::context::ConsumerInfoErrorKind;

/// Response header: where the change's events landed.
pub const POSITION: &str = "nerve-position";
/// Response header: whether every position was applied before the answer.
pub const APPLIED: &str = "nerve-applied";
/// Request header: positions a read must see.
pub const MIN_POSITION: &str = "nerve-min-position";

/// The projector applying `stream`; `None` for a stream no projector folds (tokens: every API
/// instance folds those itself) or the audit trail (a change never waits for its own entry).
fn projector_of(stream: &str) -> Option<&'static str> {
    if stream == nerve_ingest::AUDIT_STREAM {
        return None;
    }
    nerve_projections::NAMES
        .iter()
        .copied()
        .find(|n| nerve_projections::with_projection!(*n, p => p.stream() == stream) == Some(true))
}

/// The latest position per stream a projector applies.
pub fn latest(positions: &[(String, u64)]) -> BTreeMap<String, u64> {
    let mut latest = BTreeMap::new();
    for (stream, seq) in positions {
        if projector_of(stream).is_some() {
            let at = latest.entry(stream.clone()).or_insert(0);
            *at = (*at).max(*seq);
        }
    }
    latest
}

/// `NERVE_CONTROL:42,NERVE_TASKS:7`.
pub fn format(positions: &BTreeMap<String, u64>) -> String {
    positions
        .iter()
        .map(|(s, q)| format!("{s}:{q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`format`]'s text.
pub fn parse(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (stream, seq) = part
            .rsplit_once(':')
            .ok_or_else(|| format!("position {part:?} is not STREAM:SEQUENCE"))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| format!("position {part:?}: {seq:?} is not a sequence"))?;
        if projector_of(stream).is_none() {
            return Err(format!("no projection applies stream {stream:?}"));
        }
        out.insert(stream.to_owned(), seq);
    }
    Ok(out)
}

/// Waits until each stream's projector has applied its position, at most `wait`; whether
/// all were.
pub async fn wait(js: &Context, positions: &BTreeMap<String, u64>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    for (stream, seq) in positions {
        let Some(consumer) = projector_of(stream) else {
            continue;
        };
        let Ok(stream) = js.get_stream_no_info(stream).await else {
            return false;
        };
        loop {
            match stream.consumer_info(consumer).await {
                Ok(info) if info.ack_floor.stream_sequence >= *seq => break,
                // No projector ever ran for it: nothing will apply it.
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return false,
                _ if Instant::now() >= deadline => return false,
                // The projector writes in batches (`projector.batch_max_wait_ms`).
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_written_and_read_back_and_bad_ones_are_explained() {
        let p = latest(&[
            ("NERVE_CONTROL".into(), 4),
            ("NERVE_AUDIT".into(), 9),
            ("NERVE_CONTROL".into(), 7),
            ("NERVE_TASKS".into(), 2),
        ]);
        assert_eq!(format(&p), "NERVE_CONTROL:7,NERVE_TASKS:2");
        assert_eq!(parse("NERVE_CONTROL:7, NERVE_TASKS:2"), Ok(p));
        assert!(
            parse("NERVE_CONTROL")
                .unwrap_err()
                .contains("STREAM:SEQUENCE")
        );
        assert!(
            parse("NERVE_CONTROL:x")
                .unwrap_err()
                .contains("not a sequence")
        );
        assert!(parse("NERVE_AUTH:3").unwrap_err().contains("no projection"));
    }
}
