//! Access: the tokens page (admins issue, rotate and revoke tokens; a new secret is shown once)
//! and the audit trail (every change and refused call: who, what, from where, outcome).

use leptos::prelude::*;
use leptos_meta::Title;
use nerve_api::dto::auth::{AuditQuery, CreateToken, Role, TokenIssued};

use super::LoadError;
use crate::data::{create_token, get_audit, get_tokens, revoke_token, rotate_token};
use crate::format;
use crate::live::use_tick;

/// A secret just issued: shown once, with how to use it.
#[component]
fn NewSecret(issued: TokenIssued) -> impl IntoView {
    view! {
        <div class="panel" role="status" data-testid="new-token">
            <p>"Token for " <strong>{issued.name.clone()}</strong> " (" {issued.role.as_str()}
                "), valid until " {format::time(&issued.expires_at)} ". Copy it now: it is not shown again."</p>
            <pre class="mono small" data-testid="new-token-secret">{issued.token.clone()}</pre>
        </div>
    }
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let tick = use_tick();
    let create = Action::new(|request: &CreateToken| create_token(request.clone()));
    let rotate = Action::new(|id: &String| rotate_token(id.clone()));
    let revoke = Action::new(|id: &String| revoke_token(id.clone()));
    let list = Resource::new(
        move || {
            (
                tick.get(),
                create.version().get(),
                rotate.version().get(),
                revoke.version().get(),
            )
        },
        |_| get_tokens(),
    );
    let (name, set_name) = signal(String::new());
    let (role, set_role) = signal("viewer".to_owned());
    let (days, set_days) = signal("90".to_owned());
    view! {
        <Title text="Tokens · Nerve"/>
        <h1>"Tokens"</h1>
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            create.dispatch(CreateToken {
                name: name.get(),
                role: role.get(),
                ttl_secs: days.get().trim().parse::<u64>().ok().map(|d| d * 86_400),
            });
        }>
            <div class="grid3">
                <div><label for="token-name">"Name"</label>
                    <input id="token-name" type="text" placeholder="alice" prop:value=name
                        on:input=move |ev| set_name.set(event_target_value(&ev))/></div>
                <div><label for="token-role">"Role"</label>
                    <select id="token-role" prop:value=role on:change=move |ev| set_role.set(event_target_value(&ev))>
                        {Role::ALL.into_iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}
                    </select></div>
                <div><label for="token-days">"Valid for (days)"</label>
                    <input id="token-days" type="number" min="1" prop:value=days
                        on:input=move |ev| set_days.set(event_target_value(&ev))/></div>
            </div>
            <button type="submit" data-testid="token-create">"Issue token"</button>
            {move || match create.value().get() {
                Some(Ok(Ok(issued))) => view! { <NewSecret issued/> }.into_any(),
                Some(Ok(Err(reason))) => view! { <p class="error" role="alert">{reason}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </form>
        {move || rotate.value().get().map(|r| match r {
            Ok(issued) => view! { <NewSecret issued/> }.into_any(),
            Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
        })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(tokens) => {
                        let rows = tokens.into_iter().map(|t| {
                            let (a, b) = (t.token_id.clone(), t.token_id.clone());
                            let active = t.state == "active";
                            view! {
                                <tr data-token=t.token_id.clone() data-state=t.state.clone()>
                                    <td>{t.name.clone()}</td>
                                    <td class="mono small">{t.token_id.clone()}</td>
                                    <td>{t.role.as_str()}</td>
                                    <td>{t.state.clone()}</td>
                                    <td class="small">{format::time(&t.expires_at)}</td>
                                    <td class="small">{if t.last_used_at.is_empty() { "never".to_owned() } else { format::time(&t.last_used_at) }}</td>
                                    <td class="small">{t.issued_by.clone()}</td>
                                    <td>{active.then(|| view! {
                                        <button type="button" on:click=move |_| { rotate.dispatch(a.clone()); }>"Rotate"</button>
                                        " "
                                        <button type="button" data-testid="token-revoke" on:click=move |_| { revoke.dispatch(b.clone()); }>"Revoke"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Tokens"</caption>
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Id"</th><th scope="col">"Role"</th>
                                    <th scope="col">"State"</th><th scope="col">"Expires"</th><th scope="col">"Last used"</th>
                                    <th scope="col">"Issued by"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let tick = use_tick();
    let (actor, set_actor) = signal(String::new());
    let (outcome, set_outcome) = signal(String::new());
    let page = Resource::new(
        move || (tick.get(), actor.get(), outcome.get()),
        |(_, actor, outcome)| {
            get_audit(AuditQuery {
                actor: (!actor.is_empty()).then_some(actor),
                outcome: (!outcome.is_empty()).then_some(outcome),
                limit: Some(100),
                ..Default::default()
            })
        },
    );
    view! {
        <Title text="Audit · Nerve"/>
        <h1>"Audit trail"</h1>
        <form class="panel form" role="search" on:submit=move |ev| ev.prevent_default()>
            <div class="grid2">
                <div><label for="audit-actor">"Who (token name or id)"</label>
                    <input id="audit-actor" type="text" prop:value=actor
                        on:change=move |ev| set_actor.set(event_target_value(&ev))/></div>
                <div><label for="audit-outcome">"Outcome"</label>
                    <select id="audit-outcome" prop:value=outcome on:change=move |ev| set_outcome.set(event_target_value(&ev))>
                        <option value="">"any"</option>
                        <option value="applied">"applied"</option>
                        <option value="answered">"answered"</option>
                        <option value="denied">"denied"</option>
                    </select></div>
            </div>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(p) if p.entries.is_empty() => view! { <p class="muted">"Nothing recorded."</p> }.into_any(),
                    Ok(p) => {
                        let total = p.total;
                        let rows = p.entries.into_iter().map(|e| view! {
                            <tr data-outcome=e.outcome.clone()>
                                <td class="small">{format::time(&e.at)}</td>
                                <td>{if e.actor_name.is_empty() { "—".to_owned() } else { format!("{} ({})", e.actor_name, e.actor_role) }}</td>
                                <td class="mono small">{format!("{} {}", e.method, e.route)}</td>
                                <td class="mono small">{e.targets.join(", ")}</td>
                                <td>{e.status}</td>
                                <td>{e.outcome.clone()}</td>
                                <td class="mono small">{e.peer.clone()}</td>
                            </tr>
                        }).collect_view();
                        view! {
                            <p class="muted" data-testid="audit-total">{format!("{total} entries")}</p>
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Audit trail"</caption>
                                <thead><tr><th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"What"</th>
                                    <th scope="col">"About"</th><th scope="col">"Status"</th><th scope="col">"Outcome"</th>
                                    <th scope="col">"From"</th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
