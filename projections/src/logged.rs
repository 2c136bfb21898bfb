//! One message as the log holds it: what a fold may read of it, from a live consumer or a
//! replay.

use async_nats::jetstream::Message;

/// One message as the log holds it, from a live consumer or a replay.
#[derive(Debug, Clone, Copy)]
pub struct Logged<'a> {
    pub subject: &'a str,
    /// Its `Nats-Msg-Id` (the event id; empty if it had none).
    pub msg_id: &'a str,
    pub payload: &'a [u8],
    pub stream_seq: u64,
    pub published_ms: i64,
    pub redelivered: bool,
}

impl<'a> Logged<'a> {
    /// Where a JetStream message sits in its stream.
    pub fn of(msg: &'a Message) -> Self {
        let (stream_seq, delivered, published_ms) = match msg.info() {
            Ok(info) => (
                info.stream_sequence,
                info.delivered,
                nerve_ingest::publish::published_ms(&info),
            ),
            // Only a message that did not come from a stream lacks this.
            Err(_) => (0, 1, 0),
        };
        Self {
            subject: msg.subject.as_str(),
            msg_id: nerve_ingest::publish::msg_id(msg),
            payload: &msg.payload,
            stream_seq,
            published_ms,
            redelivered: delivered > 1,
        }
    }
}

/// The events of a batch to fold, each once, in order. A batch collected while writes failed
/// may hold an event twice (delivered again after its ack deadline): one copy is kept, marked
/// redelivered so the table is checked for it; every copy is still acked by the caller. A
/// nats-server killed before it saved its consumer's state delivers again, as new, events
/// already written and acked: an event at or below `written_up_to`, the highest stream
/// sequence the caller wrote, is marked redelivered too.
pub fn distinct<'a>(
    batch: impl Iterator<Item = Logged<'a>>,
    written_up_to: u64,
) -> Vec<Logged<'a>> {
    let mut out: Vec<Logged<'a>> = Vec::new();
    let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for mut m in batch {
        if m.stream_seq != 0 && m.stream_seq <= written_up_to {
            m.redelivered = true;
        }
        match at.get(&m.stream_seq) {
            Some(&i) if m.stream_seq != 0 => out[i].redelivered = true,
            _ => {
                at.insert(m.stream_seq, out.len());
                out.push(m);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, redelivered: bool) -> Logged<'static> {
        Logged {
            subject: "s",
            msg_id: "",
            payload: b"",
            stream_seq: seq,
            published_ms: 0,
            redelivered,
        }
    }

    #[test]
    fn each_event_is_folded_once_and_what_was_written_is_checked() {
        let batch = [at(7, false), at(8, false), at(7, true), at(9, false)];
        let out = distinct(batch.into_iter(), 0);
        let seqs: Vec<(u64, bool)> = out.iter().map(|m| (m.stream_seq, m.redelivered)).collect();
        assert_eq!(seqs, [(7, true), (8, false), (9, false)]);
        // Delivered as new after a broker lost its consumer's state: at or below what was
        // written, so checked against the table.
        let out = distinct([at(5, false), at(6, false), at(7, false)].into_iter(), 6);
        let seqs: Vec<(u64, bool)> = out.iter().map(|m| (m.stream_seq, m.redelivered)).collect();
        assert_eq!(seqs, [(5, true), (6, true), (7, false)]);
    }
}
