//! Dashboard: status counts, alerts firing, maintenance counts, utilisation distributions, recently changed nodes
//! and the nodes needing attention; now, or as of a past time (`?at=`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::{AsOf, LoadError, PastBanner, StatusBadge, as_of};
use crate::chart::Histogram;
use crate::data::get_fleet_summary;
use crate::live::use_tick;

#[component]
pub fn Dashboard() -> impl IntoView {
    let tick = use_tick();
    let query = use_query_map();
    let at = Memo::new(move |_| as_of(query.get().get("at")));
    let summary = Resource::new(
        move || (tick.get(), at.get()),
        |(_, at)| get_fleet_summary(at),
    );
    view! {
        <Title text="Dashboard · Nerve"/>
        <div class="section-head">
            <h1>"Fleet"</h1>
            <AsOf/>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match summary.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(s) => view! {
                        <PastBanner as_of=s.as_of.clone()/>
                        <section class="cards" aria-label="Node status">
                            <A href="/nodes" attr:class="card"><span class="num" data-testid="count-total">{s.total}</span><span>"nodes"</span></A>
                            <A href="/nodes?status=online" attr:class="card online"><span class="num" data-testid="count-online">{s.online}</span><span>"online"</span></A>
                            <A href="/nodes?status=suspect" attr:class="card suspect"><span class="num" data-testid="count-suspect">{s.suspect}</span><span>"suspect"</span></A>
                            <A href="/nodes?status=offline" attr:class="card offline"><span class="num" data-testid="count-offline">{s.offline}</span><span>"offline"</span></A>
                            <div class="card"><span class="num">{s.gpus}</span><span>"GPUs"</span></div>
                            <A href="/alerts" attr:class="card"><span class="num" data-testid="count-alerts">{s.alerts_firing}</span><span>"alerts firing"</span></A>
                        </section>
                        <section class="cards" aria-label="Maintenance">
                            <A href="/nodes?maintenance=cordoned" attr:class="card"><span class="num" data-testid="count-cordoned">{s.cordoned}</span><span>"cordoned"</span></A>
                            <A href="/nodes?maintenance=remediating" attr:class="card"><span class="num" data-testid="count-remediating">{s.remediating + s.verifying}</span><span>"remediating or verifying"</span></A>
                            <A href="/nodes?maintenance=service_required" attr:class="card"><span class="num" data-testid="count-service-required">{s.service_required}</span><span>"need service"</span></A>
                        </section>
                        <section class="grid3" aria-label="Utilisation of online nodes">
                            <Histogram label="CPU busy".to_string() counts=s.cpu_histogram/>
                            <Histogram label="Memory used".to_string() counts=s.mem_histogram/>
                            <Histogram label="GPU utilisation".to_string() counts=s.gpu_histogram/>
                        </section>
                        <section class="grid2">
                            <div class="panel">
                                <h2>"Needs attention"</h2>
                                {if s.attention.is_empty() {
                                    view! { <p class="muted">"Every node is online."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="list">
                                            {s.attention.into_iter().map(|n| {
                                                let name = if n.hostname.is_empty() { n.id.clone() } else { n.hostname.clone() };
                                                view! {
                                                    <li>
                                                        <StatusBadge status=n.status/>
                                                        <A href=format!("/nodes/{}", n.id)>{name}</A>
                                                        <span class="muted">"last seen " {crate::format::time(&n.last_seen)}</span>
                                                    </li>
                                                }
                                            }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }}
                            </div>
                            <div class="panel">
                                <h2>"Recently joined or changed"</h2>
                                <ul class="list">
                                    {s.recently_changed.into_iter().map(|c| {
                                        let name = if c.hostname.is_empty() { c.id.clone() } else { c.hostname.clone() };
                                        view! {
                                            <li>
                                                <A href=format!("/nodes/{}", c.id)>{name}</A>
                                                <span class="muted">"inventory " {crate::format::time(&c.reported_at)}</span>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                            </div>
                        </section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
