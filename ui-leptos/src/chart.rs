//! Small SVG charts: a line chart for time series and a bar chart for distributions. Pure
//! functions of their data, so they render identically on the server and in the browser.

use leptos::prelude::*;

const W: f64 = 600.0;
const H: f64 = 160.0;
const PAD_L: f64 = 44.0;
const PAD_B: f64 = 20.0;
const PAD_T: f64 = 8.0;

/// A line chart of `(unix_secs, value)` points. `max` fixes the y range (e.g. 100 for %);
/// otherwise it fits the data. `label` names it for screen readers.
#[component]
pub fn LineChart(
    label: String,
    points: Vec<(u64, f64)>,
    #[prop(optional)] max: Option<f64>,
    /// Formats y-axis values.
    fmt: fn(f64) -> String,
) -> impl IntoView {
    let n = points.len();
    let aria = format!("{label}: {n} points");
    if n == 0 {
        return view! {
            <figure class="chart">
                <figcaption>{label}</figcaption>
                <p class="empty">"No data in this range."</p>
            </figure>
        }
        .into_any();
    }
    let t0 = points.first().map_or(0, |p| p.0);
    let t1 = points.last().map_or(1, |p| p.0).max(t0 + 1);
    let top = max
        .unwrap_or_else(|| points.iter().map(|p| p.1).fold(0.0, f64::max))
        .max(f64::EPSILON);
    let x = |t: u64| PAD_L + (t - t0) as f64 / (t1 - t0) as f64 * (W - PAD_L - 4.0);
    let y = |v: f64| PAD_T + (1.0 - (v / top).clamp(0.0, 1.0)) * (H - PAD_T - PAD_B);
    let line: String = points
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect::<Vec<_>>()
        .join(" ");
    let area = format!(
        "{:.1},{:.1} {line} {:.1},{:.1}",
        x(t0),
        H - PAD_B,
        x(t1),
        H - PAD_B
    );
    let last = points.last().map_or(0.0, |p| p.1);
    view! {
        <figure class="chart">
            <figcaption>{label.clone()}<span class="now">{fmt(last)}</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=aria data-points=n>
                <line class="grid" x1=PAD_L y1=PAD_T x2=W y2=PAD_T/>
                <line class="grid" x1=PAD_L y1=(H - PAD_B + PAD_T) / 2.0 x2=W y2=(H - PAD_B + PAD_T) / 2.0/>
                <line class="axis" x1=PAD_L y1=H - PAD_B x2=W y2=H - PAD_B/>
                <text class="tick" x=PAD_L - 4.0 y=PAD_T + 4.0 text-anchor="end">{fmt(top)}</text>
                <text class="tick" x=PAD_L - 4.0 y=H - PAD_B text-anchor="end">{fmt(0.0)}</text>
                <text class="tick" x=PAD_L y=H - 4.0>{crate::format::clock(t0)}</text>
                <text class="tick" x=W - 4.0 y=H - 4.0 text-anchor="end">{crate::format::clock(t1)}</text>
                <polygon class="area" points=area/>
                <polyline class="line" points=line/>
            </svg>
        </figure>
    }
    .into_any()
}

/// Ten bars for a 0–100 % distribution (`counts[i]` nodes in `[10 i, 10 i + 10)`).
#[component]
pub fn Histogram(label: String, counts: [u64; 10]) -> impl IntoView {
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: u64 = counts.iter().sum();
    let bar_w = (W - PAD_L) / 10.0;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let h = c as f64 / top * (H - PAD_T - PAD_B);
            let title = format!("{}–{} %: {c} nodes", i * 10, i * 10 + 10);
            view! {
                <rect class="bar" x=PAD_L + i as f64 * bar_w + 2.0 y=H - PAD_B - h
                    width=bar_w - 4.0 height=h>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{label.clone()}<span class="now">{format!("{total} nodes")}</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img"
                aria-label=format!("{label}: distribution over {total} nodes")>
                <line class="axis" x1=PAD_L y1=H - PAD_B x2=W y2=H - PAD_B/>
                <text class="tick" x=PAD_L - 4.0 y=PAD_T + 4.0 text-anchor="end">{top as u64}</text>
                <text class="tick" x=PAD_L y=H - 4.0>"0 %"</text>
                <text class="tick" x=W - 4.0 y=H - 4.0 text-anchor="end">"100 %"</text>
                {bars}
            </svg>
        </figure>
    }
}
