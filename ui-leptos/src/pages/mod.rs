//! The console's pages.

pub mod access;
pub mod alerts;
pub mod clusters;
pub mod dashboard;
pub mod enrollment;
pub mod login;
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
