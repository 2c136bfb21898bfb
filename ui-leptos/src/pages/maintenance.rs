//! A node's maintenance panel on its page: the state, since when, its recent changes with who
//! and why, and for operators (now, not in a past view) the form that cordons the node, returns
//! it to service or marks it as needing service; and its remediation journal (each run's
//! steps with their outcomes, holds by the circuit breaker).

use leptos::prelude::*;
use nerve_api::dto::auth::Right;
use nerve_api::dto::fleet::{Maintenance, MaintenanceInfo, SetMaintenance};
use nerve_api::dto::remediation::RunEntry;

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
                    .into_any()
                })
            }
            </Suspense>
        </section>
    }
    .into_any()
}

/// The node's remediation journal (from its detail), newest first; nothing when it has none.
#[component]
pub fn RemediationPanel(entries: Vec<RunEntry>) -> impl IntoView {
    (!entries.is_empty()).then(|| {
        let rows = entries
            .into_iter()
            .map(|e| {
                let what = match e.kind.as_str() {
                    "step_finished" => format!("step {} {} ({})", e.step, e.action, e.stage),
                    other => other.replace('_', " "),
                };
                let detail = if e.detail.is_empty() { e.cause.clone() } else { e.detail.clone() };
                view! {
                    <tr data-kind=e.kind.clone()>
                        <td class="small">{format::time(&e.at)}</td>
                        <td>{e.policy_name.clone()}{e.dry_run.then_some(" (dry run)")}</td>
                        <td>{what}</td>
                        <td>{e.outcome.clone()}</td>
                        <td class="small">{detail}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section class="panel" aria-labelledby="remediation-h" data-testid="remediation-journal">
                <h2 id="remediation-h">"Remediation"</h2>
                <div class="table-wrap"><table>
                    <caption class="sr-only">"Remediation journal"</caption>
                    <thead><tr><th scope="col">"When"</th><th scope="col">"Policy"</th>
                        <th scope="col">"What"</th><th scope="col">"Outcome"</th><th scope="col">"Detail"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table></div>
            </section>
        }
        .into_any()
    })
}
