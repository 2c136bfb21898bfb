//! Enrollment (admins): enrollment tokens for new nodes (issued — the token shown once —,
//! listed, revoked) and every enrolled node's NATS credentials (expiry, renewals, revoke).

use leptos::prelude::*;
use leptos_meta::Title;
use nerve_api::dto::auth::CreateEnrollment;

use super::LoadError;
use crate::data::{
    create_enrollment, get_enrollments, get_node_credentials, revoke_enrollment, revoke_node,
};
use crate::format;
use crate::live::use_tick;

#[component]
pub fn EnrollmentPage() -> impl IntoView {
    let tick = use_tick();
    let create = Action::new(|request: &CreateEnrollment| create_enrollment(request.clone()));
    let revoke = Action::new(|id: &String| revoke_enrollment(id.clone()));
    let drop_node = Action::new(|id: &String| revoke_node(id.clone()));
    let versions = move || {
        (
            tick.get(),
            create.version().get(),
            revoke.version().get(),
            drop_node.version().get(),
        )
    };
    let tokens = Resource::new(versions, |_| get_enrollments());
    let nodes = Resource::new(versions, |_| get_node_credentials());
    let (name, set_name) = signal(String::new());
    let (uses, set_uses) = signal("1".to_owned());
    let (minutes, set_minutes) = signal("60".to_owned());
    view! {
        <Title text="Enrollment · Nerve"/>
        <h1>"Enrollment"</h1>
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            create.dispatch(CreateEnrollment {
                name: name.get(),
                uses: uses.get().trim().parse().ok(),
                ttl_secs: minutes.get().trim().parse::<u64>().ok().map(|m| m * 60),
            });
        }>
            <div class="grid3">
                <div><label for="enroll-name">"For"</label>
                    <input id="enroll-name" type="text" placeholder="rack 12" prop:value=name
                        on:input=move |ev| set_name.set(event_target_value(&ev))/></div>
                <div><label for="enroll-uses">"Nodes"</label>
                    <input id="enroll-uses" type="number" min="1" prop:value=uses
                        on:input=move |ev| set_uses.set(event_target_value(&ev))/></div>
                <div><label for="enroll-minutes">"Valid for (minutes)"</label>
                    <input id="enroll-minutes" type="number" min="1" prop:value=minutes
                        on:input=move |ev| set_minutes.set(event_target_value(&ev))/></div>
            </div>
            <button type="submit" data-testid="enrollment-create">"Issue enrollment token"</button>
            {move || match create.value().get() {
                Some(Ok(Ok(issued))) => view! {
                    <div class="panel" role="status">
                        <p>"For " <strong>{issued.name.clone()}</strong> ": " {issued.uses} " node(s) until "
                            {format::time(&issued.expires_at)} ". Copy it now: it is not shown again. On each node:"</p>
                        <pre class="mono small" data-testid="new-enrollment-token">{issued.token.clone()}</pre>
                        <pre class="mono small">"nerve agent --enroll <token> --api <this server's URL>"</pre>
                    </div>
                }.into_any(),
                Some(Ok(Err(reason))) => view! { <p class="error" role="alert">{reason}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </form>
        <h2>"Enrollment tokens"</h2>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match tokens.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(list) => {
                        let rows = list.into_iter().map(|e| {
                            let id = e.enrollment_id.clone();
                            let active = e.state == "active";
                            view! {
                                <tr data-enrollment=e.enrollment_id.clone() data-state=e.state.clone()>
                                    <td>{e.name.clone()}</td>
                                    <td class="mono small">{e.enrollment_id.clone()}</td>
                                    <td>{format!("{} / {}", e.used, e.uses)}</td>
                                    <td>{e.state.clone()}</td>
                                    <td class="small">{format::time(&e.expires_at)}</td>
                                    <td class="small">{e.issued_by.clone()}</td>
                                    <td>{active.then(|| view! {
                                        <button type="button" data-testid="enrollment-revoke"
                                            on:click=move |_| { revoke.dispatch(id.clone()); }>"Revoke"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Enrollment tokens"</caption>
                                <thead><tr><th scope="col">"For"</th><th scope="col">"Id"</th><th scope="col">"Used"</th>
                                    <th scope="col">"State"</th><th scope="col">"Expires"</th><th scope="col">"Issued by"</th>
                                    <th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
        <h2>"Enrolled nodes"</h2>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match nodes.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(list) => {
                        let rows = list.into_iter().map(|n| {
                            let id = n.node_id.clone();
                            let revocable = n.state != "revoked";
                            view! {
                                <tr data-node=n.node_id.clone() data-state=n.state.clone()>
                                    <td class="mono small"><a href=format!("/nodes/{}", n.node_id)>{n.node_id.clone()}</a></td>
                                    <td class="mono small">{n.public_key.clone()}</td>
                                    <td>{n.state.clone()}</td>
                                    <td class="small">{format::time(&n.enrolled_at)}</td>
                                    <td class="small">{format::time(&n.expires_at)}</td>
                                    <td>{n.renewals}</td>
                                    <td>{revocable.then(|| view! {
                                        <button type="button" data-testid="node-revoke"
                                            on:click=move |_| { drop_node.dispatch(id.clone()); }>"Revoke"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Enrolled nodes"</caption>
                                <thead><tr><th scope="col">"Node"</th><th scope="col">"NATS key"</th><th scope="col">"State"</th>
                                    <th scope="col">"Enrolled"</th><th scope="col">"Credentials expire"</th>
                                    <th scope="col">"Renewals"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
