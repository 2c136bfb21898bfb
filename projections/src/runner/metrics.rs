//! What a projection's runner counts and times, per projection: events, batches, rejections,
//! redeliveries, duplicates skipped, errors, and the batch-write and publish→store latencies.

use nerve_platform::metrics::{Counter, Histogram, Registry};

use super::batches_written;

#[derive(Clone)]
pub(super) struct RunnerMetrics {
    pub(super) events: Counter,
    pub(super) rejected: Counter,
    pub(super) duplicates: Counter,
    pub(super) batches: Counter,
    pub(super) write_errors: Counter,
    pub(super) consume_errors: Counter,
    pub(super) redeliveries: Counter,
    /// A batch's ClickHouse write, retries included.
    pub(super) write_time: Histogram,
    /// From the stream's publish time to the write that stored the event.
    pub(super) publish_to_store: Histogram,
}

impl RunnerMetrics {
    pub(super) fn new(registry: &Registry, projection: &'static str) -> Self {
        let l = [("projection", projection)];
        Self {
            events: registry.counter(
                "nerve_projector_events_total",
                "Events written to ClickHouse.",
                &l,
            ),
            rejected: registry.counter(
                "nerve_projector_rejected_total",
                "Events that could not be decoded or failed validation (stored in rejected_events).",
                &l,
            ),
            duplicates: registry.counter(
                "nerve_projector_duplicates_skipped_total",
                "Redelivered events already in ClickHouse, acked without writing again.",
                &l,
            ),
            batches: batches_written(registry, projection),
            write_errors: registry.counter(
                "nerve_projector_write_errors_total",
                "Failed ClickHouse writes (retried).",
                &l,
            ),
            consume_errors: registry.counter(
                "nerve_projector_consume_errors_total",
                "Errors reading from JetStream (the consumer is resumed).",
                &l,
            ),
            redeliveries: registry.counter(
                "nerve_projector_redeliveries_total",
                "Events JetStream delivered again (unacked past the ack wait, or a projector gone).",
                &l,
            ),
            write_time: registry.histogram(
                "nerve_projector_batch_write_seconds",
                "Time to write one batch to ClickHouse, retries included.",
                &l,
            ),
            publish_to_store: registry.histogram(
                "nerve_projector_publish_to_store_seconds",
                "From an event's publish (JetStream's timestamp) to the ClickHouse write that stored it.",
                &l,
            ),
        }
    }
}
