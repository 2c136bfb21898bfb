//! The timeline of an `ingest` run, sampled once a second (events acked by JetStream, rows in
//! ClickHouse), drawn as an SVG: throughput (published and stored per second), lag (acked but
//! not yet queryable), probe publish→queryable latency, and the cores each process under test
//! used (ClickHouse's background merges apart) over the run.

use std::fmt::Write as _;

/// One sample of the run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the first publish.
    pub t: f64,
    /// Load events acked by JetStream so far.
    pub acked: u64,
    /// Heartbeat rows in ClickHouse so far (this run's).
    pub stored: u64,
    /// CPU used by each process under test since the first publish.
    pub cpu: crate::cpu::Cpu,
}

const WIDTH: f64 = 960.0;
const PANEL: f64 = 200.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

/// A round upper bound for an axis: 1, 2 or 5 × 10^k at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&m| m >= v)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 1_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else if v.fract() != 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// One line: colour, legend, (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    series: Vec<Series<'a>>,
}

/// The SVG document for a run: `samples` in time order, `latency` as (seconds, ms).
pub fn svg(title: &str, samples: &[Sample], latency: &[(f64, f64)]) -> String {
    let mut published = Vec::new();
    let mut stored = Vec::new();
    for w in samples.windows(2) {
        let dt = (w[1].t - w[0].t).max(1e-6);
        published.push((w[1].t, (w[1].acked.saturating_sub(w[0].acked)) as f64 / dt));
        stored.push((
            w[1].t,
            (w[1].stored.saturating_sub(w[0].stored)) as f64 / dt,
        ));
    }
    let cores = |f: fn(&crate::cpu::Cpu) -> f64| -> Vec<(f64, f64)> {
        samples
            .windows(2)
            .map(|w| {
                (
                    w[1].t,
                    (f(&w[1].cpu) - f(&w[0].cpu)).max(0.0) / (w[1].t - w[0].t).max(1e-6),
                )
            })
            .collect()
    };
    let lag: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t, s.acked.saturating_sub(s.stored) as f64))
        .collect();
    let panels = [
        Panel {
            title: "throughput",
            unit: "events/s",
            series: vec![
                ("#1f77b4", "acked by JetStream", published),
                ("#ff7f0e", "stored in ClickHouse", stored),
            ],
        },
        Panel {
            title: "lag: acked, not yet stored",
            unit: "events",
            series: vec![("#d62728", "lag", lag)],
        },
        Panel {
            title: "publish → queryable (probes)",
            unit: "ms",
            series: vec![("#2ca02c", "probe latency", latency.to_vec())],
        },
        Panel {
            title: "CPU by process",
            unit: "cores",
            series: vec![
                ("#1f77b4", "nerve-loadtest", cores(|c| c.loadtest_s)),
                ("#9467bd", "nats-server", cores(|c| c.nats_s)),
                (
                    "#ff7f0e",
                    "ClickHouse (not merges)",
                    cores(|c| c.clickhouse_s - c.clickhouse_merges_s),
                ),
                (
                    "#d62728",
                    "ClickHouse merges",
                    cores(|c| c.clickhouse_merges_s),
                ),
            ],
        },
    ];
    let t_max = nice_max(
        samples
            .iter()
            .map(|s| s.t)
            .chain(latency.iter().map(|p| p.0))
            .fold(0.0, f64::max),
    );
    let height = TOP + panels.len() as f64 * (PANEL + GAP);
    let plot_w = WIDTH - LEFT - RIGHT;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL + GAP);
        let y_max = nice_max(
            panel
                .series
                .iter()
                .flat_map(|s| s.2.iter().map(|p| p.1))
                .fold(0.0, f64::max),
        );
        let x = |t: f64| LEFT + t / t_max * plot_w;
        let y = |v: f64| y0 + PANEL - v.min(y_max) / y_max * PANEL;
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{} ({})</text>"#,
            y0 - 6.0,
            escape(panel.title),
            panel.unit
        );
        for k in 0..=4 {
            let v = y_max * f64::from(k) / 4.0;
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                y(v),
                y(v),
                LEFT - 6.0,
                y(v) + 4.0,
                label(v)
            );
        }
        for k in 0..=10 {
            let t = t_max * f64::from(k) / 10.0;
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{y0:.1}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}s</text>"##,
                x(t),
                x(t),
                y0 + PANEL,
                x(t),
                y0 + PANEL + 14.0,
                label(t)
            );
        }
        for (j, (colour, legend, points)) in panel.series.iter().enumerate() {
            let path: Vec<String> = points
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            let lx = WIDTH - RIGHT - 180.0;
            let ly = y0 + 14.0 + 16.0 * j as f64;
            let _ = writeln!(
                out,
                r#"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                lx + 20.0,
                ly - 4.0,
                ly - 4.0,
                lx + 26.0,
                escape(legend)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_and_the_document_has_every_series() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(19_800.0), 20_000.0);
        assert_eq!(nice_max(21_000.0), 50_000.0);
        assert_eq!(nice_max(3.0), 5.0);
        let samples = [
            Sample {
                t: 0.0,
                acked: 0,
                stored: 0,
                cpu: Default::default(),
            },
            Sample {
                t: 1.0,
                acked: 20_000,
                stored: 15_000,
                cpu: Default::default(),
            },
            Sample {
                t: 2.0,
                acked: 40_000,
                stored: 40_000,
                cpu: Default::default(),
            },
        ];
        let doc = svg("a <run>", &samples, &[(0.5, 800.0), (1.5, 1200.0)]);
        assert!(doc.starts_with("<svg") && doc.ends_with("</svg>\n"));
        assert_eq!(doc.matches("<polyline").count(), 8);
        assert!(doc.contains("a &lt;run&gt;"));
        // Lag 5,000 at t = 1 s: the lag panel's axis goes to 5k.
        assert!(doc.contains(">5k</text>"));
    }
}
