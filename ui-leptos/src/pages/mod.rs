//! The console's pages.

pub mod access;
pub mod alerts;
pub mod api;
pub mod clusters;
pub mod dashboard;
pub mod enrollment;
pub mod login;
pub mod maintenance;
pub mod node;
pub mod nodes;
pub mod tasks;

use leptos::prelude::*;
use nerve_api::dto::fleet::NodeStatus;

/// A coloured status badge with its word (never colour alone).
#[component]
pub fn StatusBadge(status: NodeStatus) -> impl IntoView {
    view! { <span class=format!("badge {}", status.as_str())>{status.as_str()}</span> }
}

/// A horizontal usage bar with its value as text.
#[component]
pub fn Meter(value_pct: f64, label: String) -> impl IntoView {
    let v = value_pct.clamp(0.0, 100.0);
    let level = if v >= 90.0 {
        "high"
    } else if v >= 70.0 {
        "mid"
    } else {
        "low"
    };
    view! {
        <span class="meter" role="meter" aria-valuemin="0" aria-valuemax="100"
            aria-valuenow=format!("{v:.0}") aria-label=label>
            <span class=format!("fill {level}") style=format!("width: {v:.1}%")></span>
            <span class="value">{crate::format::pct(v)}</span>
        </span>
    }
}

/// An error from a server function, shown in place of the data.
#[component]
pub fn LoadError(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">"Could not load: " {message}</p> }
}

/// The "as of" picker of the dashboard and node page: a GET form that reloads the page with
/// `?at=` (UTC, as every time the console shows), and a link back to now.
#[component]
pub fn AsOf() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let at = move || query.get().get("at").unwrap_or_default();
    view! {
        <form class="asof" method="get" aria-label="As of">
            <label>"As of (UTC) "
                <input type="datetime-local" name="at" step="1" data-testid="as-of" prop:value=at/>
            </label>
            {move || query.get().get("range").map(|r| view! { <input type="hidden" name="range" value=r/> })}
            <button type="submit">"Show"</button>
            {move || (!at().is_empty()).then(|| view! {
                <a href="?" data-testid="as-of-now">"Back to now"</a>
            })}
        </form>
    }
}

/// A page's `?at=` as the API takes it: a `datetime-local` value (UTC, seconds optional)
/// completed to RFC 3339; `None` when absent or empty.
pub fn as_of(raw: Option<String>) -> Option<String> {
    let raw = raw?.trim().to_owned();
    if raw.is_empty() {
        return None;
    }
    let mut t = raw;
    // `YYYY-MM-DDTHH:MM`: a browser leaves the seconds out when they are zero.
    if t.len() == 16 && t.as_bytes().get(13) == Some(&b':') {
        t.push_str(":00");
    }
    if t.len() >= 19 && !t.ends_with('Z') && !t[19..].contains(['+', '-']) {
        t.push('Z');
    }
    Some(t)
}

/// The banner of a page showing the past.
#[component]
pub fn PastBanner(as_of: Option<String>) -> impl IntoView {
    as_of.map(|t| {
        view! {
            <p class="past" role="status" data-testid="as-of-banner">
                "As it was at " {crate::format::time(&t)} " UTC"
            </p>
        }
    })
}
