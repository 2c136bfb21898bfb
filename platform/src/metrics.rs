//! The metrics of one process (or one test) on `prometheus-client`: counters, gauges and
//! latency histograms, each a family of label sets created on first use, rendered in the
//! OpenMetrics text format (which Prometheus scrapes) at `/metrics` by `nerve serve` and by
//! the optional listener of `nerve project` and `nerve agent` ([`serve`]). Names follow
//! `nerve_<thing>_<unit>`; counters end in `_total`. `docs/metrics.md` lists them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::{Histogram as PromHistogram, exponential_buckets};
use prometheus_client::registry::Metric;

#[cfg(feature = "exporter")]
mod exporter;
#[cfg(feature = "exporter")]
pub use exporter::serve;

/// The content type of [`Registry::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(PromCounter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(PromGauge);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A distribution of durations in seconds, in exponential buckets from 0.5 ms to about 33 s.
#[derive(Clone, Debug)]
pub struct Histogram(PromHistogram);

impl Histogram {
    pub fn observe_secs(&self, secs: f64) {
        self.0.observe(secs);
    }
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

fn latency_buckets() -> PromHistogram {
    PromHistogram::new(exponential_buckets(0.0005, 2.0, 17))
}

type HistogramFamily = Family<Labels, PromHistogram, fn() -> PromHistogram>;

/// The metrics of one process (or one test). Cloning shares it.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Metrics by name: a family where labels are given, a single series where none are (the text
/// format writes it without `{}`).
#[derive(Default)]
struct Inner {
    registry: prometheus_client::registry::Registry,
    counters: HashMap<&'static str, Family<Labels, PromCounter>>,
    gauges: HashMap<&'static str, Family<Labels, PromGauge>>,
    histograms: HashMap<&'static str, HistogramFamily>,
    plain_counters: HashMap<&'static str, PromCounter>,
    plain_gauges: HashMap<&'static str, PromGauge>,
    plain_histograms: HashMap<&'static str, PromHistogram>,
}

/// One kind's single series and families, by name.
type Maps<'a, M, C> = (
    &'a mut HashMap<&'static str, M>,
    &'a mut HashMap<&'static str, Family<Labels, M, C>>,
);

/// The series `name{labels}`, made and registered (as `registered`) on first use: a single
/// series when there are no labels (the text format writes it without `{}`), else one of the
/// name's family.
fn series<M, C>(
    registry: &mut prometheus_client::registry::Registry,
    (plain, families): Maps<'_, M, C>,
    (name, registered, help): (&'static str, &str, &str),
    labels_: &[(&str, &str)],
    single: impl FnOnce() -> M,
    family: impl FnOnce() -> Family<Labels, M, C>,
) -> M
where
    M: Metric + Clone,
    C: MetricConstructor<M>,
    Family<Labels, M, C>: Metric + Clone,
{
    if labels_.is_empty() {
        let one = plain.entry(name).or_insert_with(|| {
            let one = single();
            registry.register(registered, help_text(help), one.clone());
            one
        });
        return one.clone();
    }
    let all = families.entry(name).or_insert_with(|| {
        let all = family();
        registry.register(registered, help_text(help), all.clone());
        all
    });
    all.get_or_create(&labels(labels_)).clone()
}

/// The registry ends help with a period of its own.
fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

fn labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}` (`name` ends in `_total`), created on first use. Label values
    /// must come from a bounded set (stream names, projection names, routes), never from node
    /// ids or user input.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels_: &[(&str, &str)],
    ) -> Counter {
        let mut inner = self.lock();
        let Inner {
            registry,
            counters,
            plain_counters,
            ..
        } = &mut *inner;
        // The text format adds `_total` to a counter's name.
        let base = name.strip_suffix("_total").unwrap_or(name);
        Counter(series(
            registry,
            (plain_counters, counters),
            (name, base, help),
            labels_,
            PromCounter::default,
            Family::default,
        ))
    }

    /// The gauge `name{labels}`, created on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels_: &[(&str, &str)]) -> Gauge {
        let mut inner = self.lock();
        let Inner {
            registry,
            gauges,
            plain_gauges,
            ..
        } = &mut *inner;
        Gauge(series(
            registry,
            (plain_gauges, gauges),
            (name, name, help),
            labels_,
            PromGauge::default,
            Family::default,
        ))
    }

    /// The latency histogram `name{labels}` (seconds; `name` ends in `_seconds`), created on
    /// first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels_: &[(&str, &str)],
    ) -> Histogram {
        let mut inner = self.lock();
        let Inner {
            registry,
            histograms,
            plain_histograms,
            ..
        } = &mut *inner;
        Histogram(series(
            registry,
            (plain_histograms, histograms),
            (name, name, help),
            labels_,
            latency_buckets,
            || Family::new_with_constructor(latency_buckets as fn() -> PromHistogram),
        ))
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &inner.registry);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels_and_rendered() {
        let r = Registry::new();
        let a = r.counter("nerve_x_events_total", "Events.", &[("stream", "t")]);
        let b = r.counter("nerve_x_events_total", "Events.", &[("stream", "t")]);
        a.inc();
        b.add(2);
        assert_eq!(a.get(), 3);
        r.gauge("nerve_lag_events", "Lag.", &[]).set(-4);
        r.histogram("nerve_write_seconds", "Writes.", &[("table", "h")])
            .observe_secs(0.003);
        let text = r.render();
        assert!(text.contains("# TYPE nerve_x_events counter\n"), "{text}");
        assert!(text.contains("# HELP nerve_x_events Events.\n"), "{text}");
        assert!(
            text.contains("nerve_x_events_total{stream=\"t\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nerve_lag_events gauge\nnerve_lag_events -4\n"),
            "{text}"
        );
        assert!(
            text.contains("nerve_write_seconds_count{table=\"h\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nerve_write_seconds_bucket{le=\"0.004\",table=\"h\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
