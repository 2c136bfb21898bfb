//! Node detail: status (with when the liveness tracker last changed it), the maintenance state
//! ([`super::maintenance`]), GPU health per GPU with
//! its reasons, recent events (XIDs, liveness), the full inventory (system, CPU, memory and DIMMs,
//! GPUs, disks with SMART, filesystems, network) and charts of CPU, memory, network and GPU over
//! 15 min / 1 h / 24 h / 7 d / 30 d / 1 y (from 24 h on, read from the roll-ups); now, or as of a past time (`?at=`, the charts then end there).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};
use nerve_api::dto::fleet::{MetricsSeries, NodeDetail, SetMaintenance};

use super::maintenance::{MaintenancePanel, RemediationPanel, SetAction};
use super::{AsOf, LoadError, PastBanner, StatusBadge, as_of};
use crate::chart::LineChart;
use crate::data::{get_node_detail, get_node_metrics, set_maintenance};
use crate::format;
use crate::live::use_tick;

/// Chart ranges; 120 points each, so from 24 h on a step of whole minutes or hours: read from
/// the heartbeat roll-ups, which reach back past the raw rows' retention.
const RANGES: [(&str, u64); 6] = [
    ("15m", 900),
    ("1h", 3600),
    ("24h", 86_400),
    ("7d", 604_800),
    ("30d", 2_592_000),
    ("1y", 31_536_000),
];

#[component]
pub fn NodePage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.get().get("id").unwrap_or_default());
    let range = Memo::new(move |_| {
        let r = query.get().get("range").unwrap_or_default();
        RANGES
            .iter()
            .find(|(name, _)| *name == r)
            .copied()
            .unwrap_or(RANGES[1])
    });
    let at = Memo::new(move |_| as_of(query.get().get("at")));
    let tick = use_tick();
    let set: SetAction = Action::new(|(id, change): &(String, SetMaintenance)| {
        set_maintenance(id.clone(), change.clone())
    });
    let detail = Resource::new(
        move || (id.get(), at.get(), tick.get(), set.version().get()),
        |(id, at, _, _)| get_node_detail(id, at),
    );
    let metrics = Resource::new(
        move || (id.get(), range.get().1, at.get(), tick.get()),
        |(id, secs, at, _)| get_node_metrics(id, secs, at),
    );

    view! {
        <Title text=move || format!("{} · Nerve", id.get())/>
        <div class="section-head">
            <p class="crumbs"><A href="/nodes">"Nodes"</A>" / "<span class="mono">{move || id.get()}</span></p>
            <AsOf/>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(d) => view! { <Detail d set/> }.into_any(),
                }
            })}
        </Transition>
        <section aria-labelledby="charts-h">
            <div class="section-head">
                <h2 id="charts-h">"Metrics"</h2>
                <div class="chips" role="group" aria-label="Time range">
                    {move || RANGES.iter().map(|(name, _)| {
                        let on = range.get().0 == *name;
                        view! {
                            <A href=format!("?range={name}{}", query.get().get("at").map(|a| format!("&at={a}")).unwrap_or_default()) attr:class=if on { "chip on" } else { "chip" }
                                attr:aria-current=if on { Some("true") } else { None }>{*name}</A>
                        }
                    }).collect_view()}
                </div>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match metrics.await {
                        Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                        Ok(m) => view! { <Charts m/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Detail(d: NodeDetail, set: SetAction) -> impl IntoView {
    let inv = d.inventory.clone();
    let title = inv
        .as_ref()
        .map(|i| i.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| d.id.clone());
    let since = d.status_since.clone();
    let clusters = d.clusters.clone();
    let labels = d.labels.clone();
    let gpus = d.gpus.clone();
    let events = d.events.clone();
    let alerts = d.alerts.clone();
    let maintenance = d.maintenance.clone();
    let past = d.as_of.is_some();
    let node_id = d.id.clone();
    let remediation = d.remediation.clone();
    view! {
        <PastBanner as_of=d.as_of.clone()/>
        <div class="section-head">
            <h1 data-testid="node-title">{title}</h1>
            {d.status.map(|s| view! { <StatusBadge status=s/> })}
            {since.map(|t| view! { <span class="muted small">"since " {format::time(&t)}</span> })}
        </div>
        {d.latest.map(|l| view! {
            <section class="cards" aria-label="Latest">
                <div class="card"><span class="num">{format::pct(f64::from(l.cpu_pct))}</span><span>"CPU"</span></div>
                <div class="card"><span class="num">{format::pct(format::share(l.mem_used_bytes as f64, l.mem_total_bytes as f64))}</span>
                    <span>{format!("memory of {}", format::bytes(l.mem_total_bytes as f64))}</span></div>
                <div class="card"><span class="num">{format!("{:.2}", l.load1)}</span><span>"load (1 min)"</span></div>
                <div class="card"><span class="num">{format::duration(l.uptime_secs)}</span><span>"uptime"</span></div>
                <div class="card"><span class="num small">{format::time(&l.last_seen)}</span>
                    <span>{format!("last heartbeat (every {} s)", l.heartbeat_interval_secs)}</span></div>
            </section>
        }.into_any())}
        <p class="chips" data-testid="node-org" aria-label="Clusters and labels">
            {clusters.into_iter().map(|c| view! {
                <A href=format!("/nodes?cluster={}", c.name) attr:class="chip">{format!("cluster {}", c.name)}</A>
            }).collect_view()}
            {labels.into_iter().map(|l| view! { <span class="chip mono">{l}</span> }).collect_view()}
        </p>
        {(!alerts.is_empty()).then(|| view! {
            <section class="panel" aria-label="Alerts firing">
                <h2>"Alerts firing"</h2>
                <ul class="list" data-testid="node-alerts">
                    {alerts.into_iter().map(|a| view! {
                        <li>
                            <span class=format!("badge {}", a.severity)>{a.severity.clone()}</span>
                            " " {a.rule_name} " " <span class="muted">{a.summary}</span>
                            <span class="muted small">" since " {format::time(&a.fired_at)}</span>
                        </li>
                    }).collect_view()}
                </ul>
            </section>
        }.into_any())}
        <MaintenancePanel node_id info=maintenance past set/>
        <RemediationPanel entries=remediation/>
        <GpuHealth gpus/>
        <Events events/>
        {match inv {
            None => view! { <p class="muted">"No inventory reported yet."</p> }.into_any(),
            Some(i) => {
                let det = i.detail.clone();
                let v = move |path: &str| text(det.pointer(path));
                let det = i.detail.clone();
                view! {
                <section class="grid2" aria-label="Inventory">
                    <div class="panel" data-testid="inv-system">
                        <h2>"System"</h2>
                        <dl>
                            <dt>"OS"</dt><dd>{format!("{} {}", i.os_name, i.os_version)}</dd>
                            <dt>"Kernel"</dt><dd>{i.kernel_version.clone()}</dd>
                            <dt>"Architecture"</dt><dd>{i.arch.clone()}</dd>
                            <dt>"Booted"</dt><dd>{format::time(&i.boot_time)}</dd>
                            <dt>"Agent"</dt><dd>{i.agent_version.clone()}</dd>
                            <dt>"Location"</dt><dd data-testid="inv-location">{words(&[v("/location/region"), v("/location/datacenter")])}</dd>
                            <dt>"Inventory from"</dt><dd>{format::time(&i.reported_at)}</dd>
                            <dt>"Virtualisation"</dt><dd data-testid="inv-virt">{v("/system/virtualization")}</dd>
                            <dt>"Container"</dt><dd>{v("/system/container")}</dd>
                            <dt>"Machine"</dt><dd>{words(&[v("/system/system_vendor"), v("/system/product_name")])}</dd>
                            <dt>"Board"</dt><dd>{words(&[v("/system/board_vendor"), v("/system/board_name")])}</dd>
                            <dt>"BIOS"</dt><dd>{words(&[v("/system/bios_vendor"), v("/system/bios_version"), v("/system/bios_date")])}</dd>
                        </dl>
                    </div>
                    <div class="panel" data-testid="inv-cpu">
                        <h2>"CPU and memory"</h2>
                        <dl>
                            <dt>"Model"</dt><dd>{i.cpu.model.clone()}</dd>
                            <dt>"Vendor"</dt><dd>{i.cpu.vendor.clone()}</dd>
                            <dt>"Cores"</dt><dd>{format!("{} logical{}", i.cpu.logical_cores,
                                i.cpu.physical_cores.map(|p| format!(", {p} physical")).unwrap_or_default())}</dd>
                            <dt>"Sockets"</dt><dd>{v("/cpu/sockets")}</dd>
                            <dt>"Threads per core"</dt><dd>{v("/cpu/threads_per_core")}</dd>
                            <dt>"Frequency"</dt><dd>{format!("{} MHz (base {}, max {})", i.cpu.frequency_mhz,
                                v("/cpu/base_frequency_mhz"), v("/cpu/max_frequency_mhz"))}</dd>
                            <dt>"Caches"</dt><dd data-testid="inv-caches">{caches(det.pointer("/cpu/caches"))}</dd>
                            <dt>"Flags"</dt><dd>{flags(det.pointer("/cpu/flags"))}</dd>
                            <dt>"Memory"</dt><dd>{format::bytes(i.memory_total_bytes as f64)}</dd>
                            <dt>"Swap"</dt><dd>{format::bytes(i.swap_total_bytes as f64)}</dd>
                        </dl>
                    </div>
                    <div class="panel wide" data-testid="inv-memory">
                        <h2>"Memory modules"</h2>
                        <p class="muted">{format!("Source: {} · ECC: {} · slots: {}", v("/memory/source"), v("/memory/ecc"), v("/memory/slots"))}</p>
                        {json_table(det.pointer("/memory/dimms").unwrap_or(&serde_json::Value::Null),
                            &[("locator", "Slot"), ("size_bytes", "Size"), ("kind", "Type"), ("speed_mts", "MT/s"),
                              ("configured_speed_mts", "Configured"), ("ecc", "ECC"), ("manufacturer", "Maker"), ("part_number", "Part")],
                            "DIMMs not readable here (needs dmidecode as root, or an EDAC driver).")}
                    </div>
                    <div class="panel" data-testid="inv-gpus">
                        <h2>"GPUs"</h2>
                        {json_table(&i.gpus, &[("index", "#"), ("name", "Model"), ("memory_total_bytes", "Memory"), ("pci_bus_id", "PCI"),
                    ("driver_version", "Driver"), ("cuda_version", "CUDA"), ("compute_capability", "CC"), ("mig_mode", "MIG"),
                    ("nvlink_count", "NVLinks"), ("vbios_version", "VBIOS")], "No GPUs.")}
                    </div>
                    <div class="panel" data-testid="inv-block">
                        <h2>"Disks"</h2>
                        {json_table(det.pointer("/block_devices").unwrap_or(&serde_json::Value::Null),
                            &[("name", "Disk"), ("model", "Model"), ("kind", "Kind"), ("size_bytes", "Size"),
                              ("smart_health", "SMART"), ("smart_temperature_c", "°C"), ("smart_note", "Note")],
                            "No disks reported.")}
                    </div>
                    <div class="panel wide" data-testid="inv-disks">
                        <h2>"Filesystems"</h2>
                        {json_table(&i.disks, &[("mount_point", "Mount"), ("name", "Device"), ("file_system", "FS"), ("kind", "Kind"), ("total_bytes", "Size")], "No filesystems.")}
                    </div>
                    <div class="panel wide" data-testid="inv-network">
                        <h2>"Network"</h2>
                        {json_table(&i.interfaces, &[("name", "Interface"), ("state", "State"), ("speed_mbps", "Mbit/s"), ("mac", "MAC"),
                            ("addresses", "Addresses"), ("mtu", "MTU"), ("driver", "Driver")], "No interfaces.")}
                    </div>
                    {(!i.collector_errors.as_array().is_none_or(|a| a.is_empty())).then(|| view! {
                        <div class="panel wide">
                            <h2>"Collector errors"</h2>
                            {json_table(&i.collector_errors, &[("collector", "Collector"), ("message", "Error")], "")}
                        </div>
                    })}
                </section>
            }.into_any()
            }
        }}
    }
}

/// A JSON value as text; null and missing as a dash.
fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "—".into(),
        Some(serde_json::Value::String(s)) if s.is_empty() => "—".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Known parts joined by spaces; a dash when none is known.
fn words(parts: &[String]) -> String {
    let known: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "—")
        .collect();
    if known.is_empty() {
        "—".into()
    } else {
        known.join(" ")
    }
}

/// `L1 Data 48 KiB ×32, L3 Unified 105 MiB ×2`.
fn caches(v: Option<&serde_json::Value>) -> String {
    let list = v.and_then(|v| v.as_array()).cloned().unwrap_or_default();
    if list.is_empty() {
        return "—".into();
    }
    list.iter()
        .map(|c| {
            format!(
                "L{} {} {} ×{}",
                text(c.get("level")),
                text(c.get("kind")),
                format::bytes(c.get("size_bytes").and_then(|s| s.as_f64()).unwrap_or(0.0)),
                text(c.get("instances"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CPU flags, folded behind their count.
fn flags(v: Option<&serde_json::Value>) -> AnyView {
    let list: Vec<String> = v
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return view! { "—" }.into_any();
    }
    view! {
        <details><summary>{format!("{} flags", list.len())}</summary>
            <p class="mono small">{list.join(" ")}</p></details>
    }
    .into_any()
}

/// Each GPU's live state and health verdict with its reasons (from the latest heartbeat).
#[component]
fn GpuHealth(gpus: serde_json::Value) -> impl IntoView {
    let gpus = gpus.as_array().cloned().unwrap_or_default();
    (!gpus.is_empty()).then(|| {
        let rows = gpus
            .iter()
            .map(|g| {
                let health = g.get("health").and_then(|h| h.as_str()).unwrap_or("").to_owned();
                let reasons: Vec<String> = g
                    .get("health_reasons")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter()
                            .map(|x| text(x.get("message")))
                            .collect()
                    })
                    .unwrap_or_default();
                let power = format!(
                    "{} / {} W",
                    text(g.get("power_w")),
                    text(g.get("power_limit_w"))
                );
                view! {
                    <tr data-testid="gpu-row">
                        <td>{text(g.get("index"))}</td>
                        <td><span class=format!("badge {}", match health.as_str() {
                            "critical" => "offline", "warning" => "suspect", _ => "online" })>
                            {if health.is_empty() { "—".to_owned() } else { health.clone() }}</span></td>
                        <td>{format!("{} %", text(g.get("util_pct")))}</td>
                        <td>{format!("{} °C", text(g.get("temperature_c")))}</td>
                        <td>{power}</td>
                        <td>{format!("{} / {}", text(g.get("ecc_corrected")), text(g.get("ecc_uncorrected")))}</td>
                        <td>{text(g.get("xid_total"))}</td>
                        <td>{if reasons.is_empty() { "—".to_owned() } else { reasons.join("; ") }}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section class="panel wide" aria-labelledby="gpu-health-h" data-testid="gpu-health">
                <h2 id="gpu-health-h">"GPU health"</h2>
                <div class="table-wrap"><table class="kv">
                    <thead><tr><th scope="col">"#"</th><th scope="col">"Verdict"</th><th scope="col">"Util"</th>
                        <th scope="col">"Temp"</th><th scope="col">"Power"</th><th scope="col">"ECC corr. / uncorr."</th>
                        <th scope="col">"XIDs"</th><th scope="col">"Reasons"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table></div>
            </section>
        }
    })
}

/// The node's newest events.
#[component]
fn Events(events: Vec<nerve_api::dto::fleet::NodeEventItem>) -> impl IntoView {
    (!events.is_empty()).then(|| {
        let rows = events
            .into_iter()
            .map(|e| {
                let sev = match e.severity.as_str() {
                    "critical" => "offline",
                    "warning" => "suspect",
                    _ => "online",
                };
                view! {
                    <tr data-testid="event-row">
                        <td>{format::time(&e.at)}</td>
                        <td><span class=format!("badge {sev}")>{e.severity.clone()}</span></td>
                        <td class="mono">{e.kind}</td>
                        <td>{e.summary}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section class="panel wide" aria-labelledby="events-h" data-testid="events">
                <h2 id="events-h">"Events"</h2>
                <div class="table-wrap"><table class="kv">
                    <thead><tr><th scope="col">"When"</th><th scope="col">"Severity"</th>
                        <th scope="col">"Event"</th><th scope="col">"What"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table></div>
            </section>
        }
    })
}

/// A table of the `columns` of a JSON array of objects; byte counts are formatted.
fn json_table(
    rows: &serde_json::Value,
    columns: &[(&'static str, &'static str)],
    empty: &'static str,
) -> AnyView {
    let rows = rows.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return view! { <p class="muted">{empty}</p> }.into_any();
    }
    let cell = |v: Option<&serde_json::Value>, key: &str| -> String {
        match v {
            None | Some(serde_json::Value::Null) => "—".into(),
            Some(serde_json::Value::Number(n)) if key.ends_with("_bytes") => {
                format::bytes(n.as_f64().unwrap_or(0.0))
            }
            Some(serde_json::Value::String(s)) if s.is_empty() => "—".into(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            Some(other) => other.to_string(),
        }
    };
    let head = columns
        .iter()
        .map(|(_, h)| view! { <th scope="col">{*h}</th> })
        .collect_view();
    let body = rows
        .iter()
        .map(|r| {
            let cells = columns
                .iter()
                .map(|(k, _)| view! { <td>{cell(r.get(*k), k)}</td> })
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="table-wrap"><table class="kv"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>
    }
    .into_any()
}

#[component]
fn Charts(m: MetricsSeries) -> impl IntoView {
    let series = |f: fn(&nerve_api::dto::fleet::MetricsPoint) -> f64| -> Vec<(u64, f64)> {
        m.points.iter().map(|p| (u64::from(p.ts), f(p))).collect()
    };
    let mem_pct = series(|p| format::share(p.mem_used_bytes, p.mem_total_bytes as f64));
    let has_gpu = m.points.iter().any(|p| p.gpu_util_pct > 0.0);
    view! {
        <div class="grid2 charts">
            <LineChart label="CPU busy".to_string() points=series(|p| p.cpu_pct) max=100.0 fmt=format::pct/>
            <LineChart label="Memory used".to_string() points=mem_pct max=100.0 fmt=format::pct/>
            <LineChart label="Network received".to_string() points=series(|p| p.net_rx_bytes_per_sec) fmt=format::rate/>
            <LineChart label="Network sent".to_string() points=series(|p| p.net_tx_bytes_per_sec) fmt=format::rate/>
            {has_gpu.then(|| view! {
                <LineChart label="GPU utilisation".to_string() points=series(|p| p.gpu_util_pct) max=100.0 fmt=format::pct/>
            })}
        </div>
    }
}
