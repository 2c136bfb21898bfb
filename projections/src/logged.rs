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
