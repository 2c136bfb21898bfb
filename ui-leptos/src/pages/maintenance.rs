//! A node's maintenance panel on its page: the state, since when, its recent changes with who
//! and why, and for operators (now, not in a past view) the form that cordons the node, returns
//! it to service or marks it as needing service.

use leptos::prelude::*;
use nerve_api::dto::auth::Right;
use nerve_api::dto::fleet::{Maintenance, MaintenanceInfo, SetMaintenance};

use crate::data::FormResult;
use crate::format;
use crate::session::can;

/// Changes listed on the page.
const SHOWN: usize = 5;

/// What the form's buttons dispatch: the node and the change.
pub type SetAction = Action<(String, SetMaintenance), Result<FormResult, ServerFnError>>;

#[component]
pub fn MaintenancePanel(
    node_id: String,
    info: MaintenanceInfo,
    /// A past view shows the state then and offers no change.
    past: bool,
    set: SetAction,
) -> impl IntoView {
    let (reason, set_reason) = signal(String::new());
    let state = info.state;
    let send = move |to: Maintenance| {
        let id = node_id.clone();
        move |_| {
            set.dispatch((
                id.clone(),
                SetMaintenance {
                    state: to,
                    reason: reason.get_untracked(),
                },
            ));
        }
    };
    let problem = move || match set.value().get() {
        Some(Ok(Err(fields))) => Some(
            fields
                .into_iter()
                .map(|f| f.message)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let history = info.history.into_iter().take(SHOWN).map(|c| {
        view! {
            <li>
                <span class="badge maint">{c.state.label()}</span>
                " " {c.reason} " "
                <span class="muted small">{format!("{} · {}", c.requested_by, format::time(&c.at))}</span>
            </li>
        }
    });
    view! {
        <section class="panel" aria-labelledby="maint-h" data-testid="maintenance-panel">
            <h2 id="maint-h">"Maintenance"</h2>
            <p>
                <span data-testid="maintenance-state" class=if state.held() { "badge maint" } else { "badge online" }>
                    {state.label()}
                </span>
                {info.since.map(|t| view! { <span class="muted small">" since " {format::time(&t)}</span> })}
            </p>
            <ul class="list" data-testid="maintenance-history">{history.collect_view()}</ul>
            <Suspense fallback=|| ()>
            {
                let send = send.clone();
                move || (can(Right::Operate) && !past).then(|| {
                    let send = send.clone();
                    view! {
                        <div class="form">
                            <label for="maint-reason">"Reason"</label>
                            <input id="maint-reason" type="text" prop:value=reason
                                on:input=move |ev| set_reason.set(event_target_value(&ev))/>
                            <div class="chips">
                                {(state != Maintenance::Cordoned).then(|| view! {
                                    <button type="button" data-testid="cordon" on:click=send(Maintenance::Cordoned)>"Cordon"</button>
                                })}
                                {state.held().then(|| view! {
                                    <button type="button" data-testid="uncordon" on:click=send(Maintenance::InService)>"Return to service"</button>
                                })}
                                {(state != Maintenance::ServiceRequired).then(|| view! {
                                    <button type="button" data-testid="service-required" on:click=send(Maintenance::ServiceRequired)>"Needs service"</button>
                                })}
                            </div>
                            {move || problem().map(|p| view! { <p class="error" role="alert">{p}</p> })}
                        </div>
                    }
                })
            }
            </Suspense>
        </section>
    }
}
