//! A small metrics registry: named counters and gauges with fixed, bounded label sets, rendered
//! in the Prometheus text format at `/metrics`. Names follow `nerve_<thing>_<unit>_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

type Key = (&'static str, String);

/// The metrics of one process (or one test). Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    help: BTreeMap<&'static str, &'static str>,
    metrics: BTreeMap<Key, Metric>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, created on first use. Label values must come from a bounded
    /// set (stream names, projection names), never from node ids or user input.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        let mut inner = self.lock();
        inner.help.insert(name, help);
        match inner
            .metrics
            .entry((name, render_labels(labels)))
            .or_insert_with(|| Metric::Counter(Counter::default()))
        {
            Metric::Counter(c) => c.clone(),
            Metric::Gauge(_) => Counter::default(),
        }
    }

    /// The gauge `name{labels}`, created on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        let mut inner = self.lock();
        inner.help.insert(name, help);
        match inner
            .metrics
            .entry((name, render_labels(labels)))
            .or_insert_with(|| Metric::Gauge(Gauge::default()))
        {
            Metric::Gauge(g) => g.clone(),
            Metric::Counter(_) => Gauge::default(),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), metric) in &inner.metrics {
            if *name != last {
                let kind = match metric {
                    Metric::Counter(_) => "counter",
                    Metric::Gauge(_) => "gauge",
                };
                let help = inner.help.get(name).copied().unwrap_or("");
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                last = name;
            }
            let value = match metric {
                Metric::Counter(c) => c.get() as i128,
                Metric::Gauge(g) => g.get() as i128,
            };
            let _ = writeln!(out, "{name}{labels} {value}");
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", body.join(","))
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
        r.gauge("nerve_lag_events", "Lag.", &[]).set(-4);
        let text = r.render();
        assert!(
            text.contains("nerve_x_events_total{stream=\"t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nerve_lag_events gauge\nnerve_lag_events -4"),
            "{text}"
        );
    }
}
