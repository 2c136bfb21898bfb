//! Clusters: the list with node counts (each links to its nodes), a form to create one, and
//! delete. Membership and labels are managed through the API (`/api/v1/clusters/...`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::LoadError;
use crate::data::{create_cluster, delete_cluster, get_clusters};
use crate::format;
use crate::live::use_tick;
use crate::session::can;
use nerve_api::dto::auth::Right;

#[component]
pub fn ClustersPage() -> impl IntoView {
    let tick = use_tick();
    let create = Action::new(|(name, description): &(String, String)| {
        create_cluster(name.clone(), description.clone())
    });
    let delete = Action::new(|id: &String| delete_cluster(id.clone()));
    // Refetch on the tick and after every change.
    let list = Resource::new(
        move || (tick.get(), create.version().get(), delete.version().get()),
        |_| get_clusters(),
    );
    let (name, set_name) = signal(String::new());
    let (description, set_description) = signal(String::new());
    view! {
        <Title text="Clusters · Nerve"/>
        <h1>"Clusters"</h1>
        <Suspense fallback=|| ()>
        {move || can(Right::Operate).then(|| view! {
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            create.dispatch((name.get(), description.get()));
        }>
            <div class="grid2">
                <div><label for="cluster-name">"Name"</label>
                    <input id="cluster-name" type="text" placeholder="training-a" prop:value=name
                        on:input=move |ev| set_name.set(event_target_value(&ev))/></div>
                <div><label for="cluster-description">"Description"</label>
                    <input id="cluster-description" type="text" prop:value=description
                        on:input=move |ev| set_description.set(event_target_value(&ev))/></div>
            </div>
            <button type="submit" data-testid="cluster-create">"Create cluster"</button>
            {move || match create.value().get() {
                Some(Ok(Err(reason))) => Some(view! { <p class="error" role="alert">{reason}</p> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any()),
                Some(Ok(Ok(_))) => Some(view! { <p class="muted" role="status">"Created; it appears below in a moment."</p> }.into_any()),
                None => None,
            }}
        </form>
        }.into_any())}
        </Suspense>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(l) if l.clusters.is_empty() => view! { <p class="muted">"No clusters yet."</p> }.into_any(),
                    Ok(l) => {
                        let rows = l.clusters.into_iter().map(|c| {
                            let id = c.cluster_id.clone();
                            let href = format!("/nodes?cluster={}", c.name);
                            let name = c.name.clone();
                            view! {
                                <tr data-cluster=c.name.clone()>
                                    <td><A href=href>{name}</A></td>
                                    <td>{c.description.clone()}</td>
                                    <td data-testid="cluster-nodes">{c.nodes}</td>
                                    <td class="small">{format::time(&c.created_at)}</td>
                                    <td>{can(Right::Operate).then(|| view! {
                                        <button type="button" on:click=move |_| { delete.dispatch(id.clone()); }>"Delete"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Clusters"</caption>
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Description"</th>
                                    <th scope="col">"Nodes"</th><th scope="col">"Created"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
