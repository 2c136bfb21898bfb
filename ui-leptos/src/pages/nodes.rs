//! Nodes: the fleet table. Search, status and maintenance filters, sort and page live in the
//! URL (`/nodes?q=&status=&maintenance=&sort=&order=&page=`), so every view is linkable and the server does the
//! filtering, sorting and paging.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{A, Form};
use leptos_router::hooks::use_query_map;
use nerve_api::dto::fleet::{Maintenance, NodeListQuery, NodeSort, NodeStatus, SortOrder};

use super::{LoadError, Meter, StatusBadge};
use crate::data::get_nodes;
use crate::format;
use crate::live::use_tick;

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// The list state the URL describes.
#[derive(Debug, Clone, PartialEq)]
struct View {
    q: String,
    status: Option<NodeStatus>,
    /// Cluster (id or name) and label (`key=value`) filters, from links elsewhere.
    cluster: String,
    label: String,
    maintenance: Option<Maintenance>,
    sort: NodeSort,
    order: SortOrder,
    page: u64,
}

impl View {
    fn href(&self) -> String {
        let mut parts = Vec::new();
        if !self.q.is_empty() {
            parts.push(format!("q={}", encode(&self.q)));
        }
        if let Some(s) = self.status {
            parts.push(format!("status={}", s.as_str()));
        }
        if !self.cluster.is_empty() {
            parts.push(format!("cluster={}", encode(&self.cluster)));
        }
        if !self.label.is_empty() {
            parts.push(format!("label={}", encode(&self.label)));
        }
        if let Some(m) = self.maintenance {
            parts.push(format!("maintenance={}", m.as_str()));
        }
        if self.sort != NodeSort::Id {
            parts.push(format!("sort={}", self.sort.as_str()));
        }
        if self.order != SortOrder::Asc {
            parts.push(format!("order={}", self.order.as_str()));
        }
        if self.page > 0 {
            parts.push(format!("page={}", self.page + 1));
        }
        if parts.is_empty() {
            "/nodes".into()
        } else {
            format!("/nodes?{}", parts.join("&"))
        }
    }

    fn query(&self) -> NodeListQuery {
        NodeListQuery {
            limit: Some(PAGE_SIZE),
            offset: Some(self.page * u64::from(PAGE_SIZE)),
            status: self.status,
            q: (!self.q.is_empty()).then(|| self.q.clone()),
            sort: Some(self.sort),
            order: Some(self.order),
            cluster: (!self.cluster.is_empty()).then(|| self.cluster.clone()),
            label: (!self.label.is_empty()).then(|| self.label.clone()),
            maintenance: self.maintenance,
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
pub fn NodesPage() -> impl IntoView {
    let query = use_query_map();
    let view_state = Memo::new(move |_| {
        let q = query.get();
        View {
            q: q.get("q").unwrap_or_default(),
            status: q.get("status").and_then(|s| NodeStatus::parse(&s)),
            cluster: q.get("cluster").unwrap_or_default(),
            label: q.get("label").unwrap_or_default(),
            maintenance: q
                .get("maintenance")
                .filter(|m| !m.is_empty())
                .and_then(|m| Maintenance::parse(&m)),
            sort: q
                .get("sort")
                .and_then(|s| NodeSort::parse(&s))
                .unwrap_or(NodeSort::Id),
            order: if q.get("order").as_deref() == Some("desc") {
                SortOrder::Desc
            } else {
                SortOrder::Asc
            },
            page: q
                .get("page")
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(1)
                .max(1)
                - 1,
        }
    });
    let tick = use_tick();
    let page = Resource::new(
        move || (view_state.get(), tick.get()),
        |(v, _)| get_nodes(v.query()),
    );

    let status_link = move |status: Option<NodeStatus>, label: &'static str| {
        let v = view_state.get();
        let target = View {
            status,
            page: 0,
            ..v.clone()
        };
        let current = v.status == status;
        view! {
            <A href=target.href() attr:class=if current { "chip on" } else { "chip" }
                attr:aria-current=if current { Some("true") } else { None }>{label}</A>
        }
    };
    let maintenance_link = move |maintenance: Option<Maintenance>, label: &'static str| {
        let v = view_state.get();
        let target = View {
            maintenance,
            page: 0,
            ..v.clone()
        };
        let current = v.maintenance == maintenance;
        view! {
            <A href=target.href() attr:class=if current { "chip on" } else { "chip" }
                attr:aria-current=if current { Some("true") } else { None }>{label}</A>
        }
    };
    let header = move |sort: NodeSort, label: &'static str| {
        let v = view_state.get();
        let active = v.sort == sort;
        let order = if active && v.order == SortOrder::Asc {
            SortOrder::Desc
        } else {
            SortOrder::Asc
        };
        let target = View {
            sort,
            order,
            page: 0,
            ..v.clone()
        };
        let aria_sort = match (active, v.order) {
            (false, _) => "none",
            (true, SortOrder::Asc) => "ascending",
            (true, SortOrder::Desc) => "descending",
        };
        let arrow = match (active, v.order) {
            (false, _) => "",
            (true, SortOrder::Asc) => " ▲",
            (true, SortOrder::Desc) => " ▼",
        };
        view! {
            <th scope="col" aria-sort=aria_sort>
                <A href=target.href() attr:data-sort=sort.as_str()>{label}{arrow}</A>
            </th>
        }
    };

    view! {
        <Title text="Nodes · Nerve"/>
        <h1>"Nodes"</h1>
        {move || {
            let v = view_state.get();
            let scope: Vec<String> = [
                (!v.cluster.is_empty()).then(|| format!("cluster {}", v.cluster)),
                (!v.label.is_empty()).then(|| format!("label {}", v.label)),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!scope.is_empty()).then(|| view! {
                <p class="muted" data-testid="scope">{format!("Only {} · ", scope.join(" and "))}
                    <A href="/nodes">"show all"</A></p>
            })
        }}
        <div class="toolbar">
            <Form action="/nodes" attr:role="search">
                <label for="node-search" class="sr-only">"Search nodes"</label>
                <input id="node-search" type="search" name="q" placeholder="Search hostname or id"
                    prop:value=move || view_state.get().q/>
                {move || view_state.get().status.map(|s| view! {
                    <input type="hidden" name="status" value=s.as_str()/>
                })}
                {move || { let c = view_state.get().cluster; (!c.is_empty()).then(|| view! {
                    <input type="hidden" name="cluster" value=c/>
                })}}
                {move || { let l = view_state.get().label; (!l.is_empty()).then(|| view! {
                    <input type="hidden" name="label" value=l/>
                })}}
                {move || view_state.get().maintenance.map(|m| view! {
                    <input type="hidden" name="maintenance" value=m.as_str()/>
                })}
                <button type="submit">"Search"</button>
            </Form>
            <div class="chips" role="group" aria-label="Filter by status">
                {move || status_link(None, "All")}
                {move || status_link(Some(NodeStatus::Online), "Online")}
                {move || status_link(Some(NodeStatus::Suspect), "Suspect")}
                {move || status_link(Some(NodeStatus::Offline), "Offline")}
            </div>
            <div class="chips" role="group" aria-label="Filter by maintenance state">
                {move || maintenance_link(None, "Any state")}
                {move || maintenance_link(Some(Maintenance::Cordoned), "Cordoned")}
                {move || maintenance_link(Some(Maintenance::Remediating), "Remediating")}
                {move || maintenance_link(Some(Maintenance::ServiceRequired), "Service required")}
            </div>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(p) => {
                        let v = view_state.get_untracked();
                        let first = p.offset + 1;
                        let last = p.offset + p.nodes.len() as u64;
                        let pages = p.total.div_ceil(u64::from(PAGE_SIZE)).max(1);
                        let prev = (v.page > 0).then(|| View { page: v.page - 1, ..v.clone() }.href());
                        let next = (last < p.total).then(|| View { page: v.page + 1, ..v.clone() }.href());
                        let rows = p.nodes.into_iter().map(|n| {
                            let name = if n.hostname.is_empty() { "—".to_string() } else { n.hostname.clone() };
                            let mem = format::share(n.mem_used_bytes as f64, n.mem_total_bytes as f64);
                            view! {
                                <tr data-node-id=n.id.clone()>
                                    <td><StatusBadge status=n.status/></td>
                                    <td><A href=format!("/nodes/{}", n.id)>{name}</A>
                                        {n.maintenance.held().then(|| view! {
                                            <span class="badge maint" data-testid="maintenance">{n.maintenance.label()}</span>
                                        })}
                                        <div class="muted mono small">{n.id.clone()}</div></td>
                                    <td><Meter value_pct=f64::from(n.cpu_pct) label="CPU".to_string()/></td>
                                    <td><Meter value_pct=mem label="Memory".to_string()/></td>
                                    <td>{if n.gpu_count == 0 {
                                        view! { <span class="muted">"none"</span> }.into_any()
                                    } else {
                                        view! { <Meter value_pct=f64::from(n.gpu_util_pct_avg) label=format!("{} GPUs", n.gpu_count)/> }.into_any()
                                    }}</td>
                                    <td class="small">{format::time(&n.last_seen)}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <p class="muted" data-testid="range">
                                {if p.total == 0 { "No nodes match.".to_string() }
                                 else { format!("{first}–{last} of {} nodes", p.total) }}
                            </p>
                            <div class="table-wrap">
                                <table class="nodes">
                                    <caption class="sr-only">"Nodes"</caption>
                                    <thead><tr>
                                        {header(NodeSort::Status, "Status")}
                                        {header(NodeSort::Hostname, "Host")}
                                        {header(NodeSort::Cpu, "CPU")}
                                        {header(NodeSort::Mem, "Memory")}
                                        {header(NodeSort::Gpu, "GPU")}
                                        {header(NodeSort::LastSeen, "Last seen")}
                                    </tr></thead>
                                    <tbody>{rows}</tbody>
                                </table>
                            </div>
                            <nav class="pager" aria-label="Pages">
                                {match prev {
                                    Some(h) => view! { <A href=h attr:rel="prev">"← Previous"</A> }.into_any(),
                                    None => view! { <span class="muted">"← Previous"</span> }.into_any(),
                                }}
                                <span data-testid="page">{format!("Page {} of {pages}", v.page + 1)}</span>
                                {match next {
                                    Some(h) => view! { <A href=h attr:rel="next">"Next →"</A> }.into_any(),
                                    None => view! { <span class="muted">"Next →"</span> }.into_any(),
                                }}
                            </nav>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
