//! Alerting: `/alerts` (firing alerts, silences with a form to add one, the latest firings and
//! resolutions), `/alerts/rules` (rules with a form whose problems show next to their fields)
//! and `/alerts/channels` (notification channels, a form, and a test send).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use nerve_api::dto::{
    alerts::Aggregate, alerts::ChannelKind, alerts::CreateSilence, alerts::FieldError,
    alerts::Metric, alerts::Op, alerts::RuleKind, alerts::RuleScope, alerts::SaveChannel,
    alerts::SaveRule, alerts::Severity,
};

use super::LoadError;
use crate::data::{
    FormResult, create_channel, create_rule, create_silence, delete_channel, delete_rule,
    delete_silence, get_alert_history, get_alerts, get_channels, get_rules, get_silences,
    test_channel,
};
use crate::format;
use crate::live::use_tick;
use crate::session::can;
use nerve_api::dto::auth::Right;

/// The links between the three alerting pages.
#[component]
fn AlertNav() -> impl IntoView {
    view! {
        <nav class="chips subnav" aria-label="Alerting">
            <A href="/alerts" exact=true attr:class="chip">"Alerts & silences"</A>
            <A href="/alerts/rules" attr:class="chip">"Rules"</A>
            <A href="/alerts/channels" attr:class="chip">"Channels"</A>
        </nav>
    }
}

/// The problems a form's answer names for `field` (`""`: not about one field).
fn problems_of(answer: Option<Result<FormResult, ServerFnError>>, field: &str) -> Vec<String> {
    match answer {
        Some(Ok(Err(problems))) => problems
            .into_iter()
            .filter(|p| p.field == field)
            .map(|p| p.message)
            .collect(),
        Some(Err(e)) if field.is_empty() => vec![e.to_string()],
        _ => Vec::new(),
    }
}

/// A field's problems, under it.
#[component]
fn FieldProblems(
    answer: Signal<Option<Result<FormResult, ServerFnError>>>,
    field: &'static str,
) -> impl IntoView {
    let testid = format!("error-{}", field.replace('.', "-"));
    move || {
        let p = problems_of(answer.get(), field);
        (!p.is_empty()).then(|| {
            view! { <p class="error field-error" role="alert" data-testid=testid.clone()>{p.join("; ")}</p> }
        })
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn severity_badge(severity: &str) -> impl IntoView + use<> {
    let class = match severity {
        "critical" => "badge offline",
        "warning" => "badge suspect",
        _ => "badge online",
    };
    view! { <span class=class>{severity.to_owned()}</span> }
}

#[component]
pub fn AlertsPage() -> impl IntoView {
    let tick = use_tick();
    let add = Action::new(|s: &CreateSilence| create_silence(s.clone()));
    let end = Action::new(|id: &String| delete_silence(id.clone()));
    let firing = Resource::new(move || tick.get(), |_| get_alerts("firing".into()));
    let silences = Resource::new(
        move || (tick.get(), add.version().get(), end.version().get()),
        |_| get_silences(),
    );
    let history = Resource::new(move || tick.get(), |_| get_alert_history());
    let (rule, set_rule) = signal(String::new());
    let (node, set_node) = signal(String::new());
    let (cluster, set_cluster) = signal(String::new());
    let (duration, set_duration) = signal("2h".to_owned());
    let (reason, set_reason) = signal(String::new());
    let answer = Signal::derive(move || add.value().get());
    view! {
        <Title text="Alerts · Nerve"/>
        <h1>"Alerts"</h1>
        <AlertNav/>
        <h2>"Firing"</h2>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match firing.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(l) if l.alerts.is_empty() => view! { <p class="muted" data-testid="firing-count">"Nothing is firing."</p> }.into_any(),
                    Ok(l) => {
                        let total = l.total;
                        let rows = l.alerts.into_iter().map(|a| { let node = a.node_id.clone(); view! {
                            <tr data-alert=a.alert_id.clone() data-node=a.node_id.clone()>
                                <td>{severity_badge(&a.severity)}</td>
                                <td>{a.rule_name.clone()}</td>
                                <td><A href=format!("/nodes/{}", a.node_id)>{node}</A></td>
                                <td>{a.summary.clone()}</td>
                                <td class="small">{format::time(&a.fired_at)}</td>
                                <td class="small" data-testid="muted">{if !a.muted_by.is_empty() { "muted" } else if !a.silenced_by.is_empty() { "was muted" } else { "" }}</td>
                            </tr>
                        }}).collect_view();
                        view! {
                            <p class="muted" data-testid="firing-count">{format!("{total} firing")}</p>
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Firing alerts"</caption>
                                <thead><tr><th scope="col">"Severity"</th><th scope="col">"Rule"</th><th scope="col">"Node"</th>
                                    <th scope="col">"What"</th><th scope="col">"Since"</th><th scope="col">"Muted"</th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>

        <h2>"Silences"</h2>
        <Suspense fallback=|| ()>
        {move || can(Right::Operate).then(|| view! {
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            add.dispatch(CreateSilence {
                rule: rule.get(),
                node_id: node.get(),
                cluster: cluster.get(),
                duration: duration.get(),
                reason: reason.get(),
                ..CreateSilence::default()
            });
        }>
            <div class="grid3">
                <div><label for="silence-rule">"Rule (name or id)"</label>
                    <input id="silence-rule" type="text" prop:value=rule on:input=move |ev| set_rule.set(event_target_value(&ev))/>
                    <FieldProblems answer field="rule"/></div>
                <div><label for="silence-node">"Node id"</label>
                    <input id="silence-node" type="text" class="mono" prop:value=node on:input=move |ev| set_node.set(event_target_value(&ev))/>
                    <FieldProblems answer field="node_id"/></div>
                <div><label for="silence-cluster">"Cluster (name or id)"</label>
                    <input id="silence-cluster" type="text" prop:value=cluster on:input=move |ev| set_cluster.set(event_target_value(&ev))/>
                    <FieldProblems answer field="cluster"/></div>
                <div><label for="silence-duration">"For (e.g. 2h, 30m)"</label>
                    <input id="silence-duration" type="text" prop:value=duration on:input=move |ev| set_duration.set(event_target_value(&ev))/>
                    <FieldProblems answer field="duration"/><FieldProblems answer field="ends_at"/></div>
                <div><label for="silence-reason">"Reason"</label>
                    <input id="silence-reason" type="text" prop:value=reason on:input=move |ev| set_reason.set(event_target_value(&ev))/>
                    <FieldProblems answer field="reason"/></div>
            </div>
            <button type="submit" data-testid="silence-create">"Mute notifications"</button>
            <FieldProblems answer field=""/>
        </form>
        }.into_any())}
        </Suspense>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match silences.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(l) if l.silences.is_empty() => view! { <p class="muted">"No silences."</p> }.into_any(),
                    Ok(l) => {
                        let rows = l.silences.into_iter().map(|s| {
                            let id = s.silence_id.clone();
                            let scope = [("rule", &s.rule_id), ("node", &s.node_id), ("cluster", &s.cluster_id)]
                                .into_iter()
                                .filter(|(_, v)| !v.is_empty())
                                .map(|(k, v)| format!("{k} {v}"))
                                .collect::<Vec<_>>()
                                .join(", ");
                            view! {
                                <tr data-silence=s.silence_id.clone() data-active=s.active.to_string()>
                                    <td>{scope}</td>
                                    <td>{s.reason.clone()}</td>
                                    <td class="small">{format::time(&s.ends_at)}</td>
                                    <td>{s.created_by.clone()}</td>
                                    <td>{(s.active && can(Right::Operate)).then(|| view! {
                                        <button type="button" on:click=move |_| { end.dispatch(id.clone()); }>"End now"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Silences"</caption>
                                <thead><tr><th scope="col">"Mutes"</th><th scope="col">"Reason"</th><th scope="col">"Until"</th>
                                    <th scope="col">"By"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>

        <h2>"History"</h2>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match history.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(h) if h.events.is_empty() => view! { <p class="muted">"No alert has fired yet."</p> }.into_any(),
                    Ok(h) => {
                        let rows = h.events.into_iter().map(|e| { let node = e.node_id.clone(); view! {
                            <tr>
                                <td class="small">{format::time(&e.at)}</td>
                                <td>{e.kind.clone()}</td>
                                <td>{severity_badge(&e.severity)}</td>
                                <td>{e.rule_name.clone()}</td>
                                <td><A href=format!("/nodes/{}", e.node_id)>{node}</A></td>
                                <td>{if e.reason.is_empty() { e.summary.clone() } else { format!("{} ({})", e.summary, e.reason) }}</td>
                            </tr>
                        }}).collect_view();
                        view! {
                            <div class="table-wrap"><table data-testid="alert-history">
                                <caption class="sr-only">"Alert history"</caption>
                                <thead><tr><th scope="col">"When"</th><th scope="col">"What"</th><th scope="col">"Severity"</th>
                                    <th scope="col">"Rule"</th><th scope="col">"Node"</th><th scope="col">"Detail"</th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// A `<select>` over `options` bound to `value`.
#[component]
fn Choice(
    id: &'static str,
    label: &'static str,
    options: Signal<Vec<(String, String)>>,
    value: ReadSignal<String>,
    set: WriteSignal<String>,
) -> impl IntoView {
    view! {
        <label for=id>{label}</label>
        <select id=id on:change=move |ev| set.set(event_target_value(&ev)) prop:value=value>
            {move || options.get().into_iter().map(|(v, text)| {
                let selected = value.get() == v;
                view! { <option value=v.clone() selected=selected>{text}</option> }
            }).collect_view()}
        </select>
    }
}

/// The metrics of the rule kind named `kind`, each with what it is.
fn metric_options(kind: &str) -> Vec<(String, String)> {
    Metric::of(RuleKind::parse(kind).unwrap_or(RuleKind::Threshold))
        .map(|m| (m.as_str().to_owned(), format!("{m} — {}", m.label())))
        .collect()
}

/// Every value of a rule enum, as options named by themselves.
fn plain<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<(String, String)> {
    all.iter()
        .map(|v| (name(*v).to_owned(), name(*v).to_owned()))
        .collect()
}

#[component]
pub fn RulesPage() -> impl IntoView {
    let tick = use_tick();
    let save = Action::new(|r: &SaveRule| create_rule(r.clone()));
    let remove = Action::new(|id: &String| delete_rule(id.clone()));
    let rules = Resource::new(
        move || (tick.get(), save.version().get(), remove.version().get()),
        |_| get_rules(),
    );
    let (name, set_name) = signal(String::new());
    let (kind, set_kind) = signal("threshold".to_owned());
    let (metric, set_metric) = signal("cpu_pct".to_owned());
    let (aggregate, set_aggregate) = signal("avg".to_owned());
    let (op, set_op) = signal(">".to_owned());
    let (threshold, set_threshold) = signal(String::new());
    let (window, set_window) = signal("300".to_owned());
    let (for_secs, set_for_secs) = signal("0".to_owned());
    let (resolve_after, set_resolve_after) = signal("60".to_owned());
    let (severity, set_severity) = signal("warning".to_owned());
    let (clusters, set_clusters) = signal(String::new());
    let (labels, set_labels) = signal(String::new());
    let (nodes, set_nodes) = signal(String::new());
    let (channels, set_channels) = signal(String::new());
    let (local, set_local) = signal(Vec::<FieldError>::new());
    let metrics = Signal::derive(move || metric_options(&kind.get()));
    // A kind change picks that kind's first metric.
    Effect::new(move |_| {
        let options = metrics.get();
        if !options.iter().any(|(v, _)| *v == metric.get_untracked()) {
            set_metric.set(options.first().map(|(v, _)| v.clone()).unwrap_or_default());
        }
    });
    let answer = Signal::derive(move || {
        let local = local.get();
        if local.is_empty() {
            save.value().get()
        } else {
            Some(Ok(Err(local)))
        }
    });
    let submit = move || {
        let mut problems = Vec::new();
        let mut number = |field: &str, text: String| -> Option<f64> {
            let t = text.trim();
            if t.is_empty() {
                return None;
            }
            t.parse::<f64>().ok().filter(|v| v.is_finite()).or_else(|| {
                problems.push(FieldError {
                    field: field.to_owned(),
                    message: format!("{t:?} is not a number"),
                });
                None
            })
        };
        let threshold = number("threshold", threshold.get());
        let window = number("window_secs", window.get());
        let for_secs = number("for_secs", for_secs.get());
        let resolve_after = number("resolve_after_secs", resolve_after.get());
        set_local.set(problems.clone());
        if !problems.is_empty() {
            return;
        }
        let secs = |v: Option<f64>| v.map(|v| v.max(0.0) as u64);
        save.dispatch(SaveRule {
            name: name.get(),
            kind: kind.get(),
            metric: metric.get(),
            aggregate: Some(aggregate.get()),
            op: Some(op.get()),
            threshold,
            window_secs: secs(window),
            for_secs: secs(for_secs).unwrap_or(0),
            resolve_after_secs: secs(resolve_after),
            severity: Some(severity.get()),
            scope: RuleScope {
                clusters: split_list(&clusters.get()),
                labels: split_list(&labels.get()),
                node_ids: split_list(&nodes.get()),
            },
            channels: split_list(&channels.get()),
            ..SaveRule::default()
        });
    };
    view! {
        <Title text="Alert rules · Nerve"/>
        <h1>"Alert rules"</h1>
        <AlertNav/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match rules.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(l) if l.rules.is_empty() => view! { <p class="muted">"No rules yet."</p> }.into_any(),
                    Ok(l) => {
                        let rows = l.rules.into_iter().map(|r| {
                            let id = r.rule_id.clone();
                            let condition = match r.kind.as_str() {
                                "absence" => format!("node {} for {}", r.metric, format::duration(r.for_secs)),
                                "event" => format!("{} over {} {} {}", r.metric, format::duration(r.window_secs), r.op, r.threshold),
                                "archive" => format!("{} {} {}", r.metric, r.op, r.threshold),
                                _ => format!("{}({}) over {} {} {}", r.aggregate, r.metric, format::duration(r.window_secs), r.op, r.threshold),
                            };
                            let scope = [r.scope.clusters.len(), r.scope.labels.len(), r.scope.node_ids.len()];
                            let scope = if r.kind == "archive" {
                                "every stream".to_owned()
                            } else if scope == [0, 0, 0] {
                                "every node".to_owned()
                            } else {
                                [r.scope.labels.join(", "), format!("{} cluster(s)", scope[0]), format!("{} node(s)", scope[2])].join("; ")
                            };
                            view! {
                                <tr data-rule=r.name.clone()>
                                    <td>{r.name.clone()}</td>
                                    <td class="mono small">{condition}</td>
                                    <td>{severity_badge(&r.severity)}</td>
                                    <td class="small">{scope}</td>
                                    <td>{r.channels.len()}</td>
                                    <td data-testid="rule-firing">{r.firing}</td>
                                    <td>{if r.enabled { "on" } else { "off" }}</td>
                                    <td>{can(Right::Admin).then(|| view! {
                                        <button type="button" on:click=move |_| { remove.dispatch(id.clone()); }>"Delete"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Alert rules"</caption>
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Condition"</th><th scope="col">"Severity"</th>
                                    <th scope="col">"Scope"</th><th scope="col">"Channels"</th><th scope="col">"Firing"</th>
                                    <th scope="col">"Enabled"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>

        <Suspense fallback=|| ()>
        {move || can(Right::Admin).then(|| view! {
        <h2>"New rule"</h2>
        <form class="panel form" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <div class="grid3">
                <div><label for="rule-name">"Name"</label>
                    <input id="rule-name" type="text" placeholder="gpu-hot" prop:value=name on:input=move |ev| set_name.set(event_target_value(&ev))/>
                    <FieldProblems answer field="name"/></div>
                <div><Choice id="rule-kind" label="Kind" options=Signal::derive(|| plain(RuleKind::ALL, RuleKind::as_str)) value=kind set=set_kind/>
                    <FieldProblems answer field="kind"/></div>
                <div><Choice id="rule-metric" label="Metric" options=metrics value=metric set=set_metric/>
                    <FieldProblems answer field="metric"/></div>
                <div hidden=move || kind.get() != "threshold"><Choice id="rule-aggregate" label="Aggregate over the window" options=Signal::derive(|| plain(Aggregate::ALL, Aggregate::as_str)) value=aggregate set=set_aggregate/>
                    <FieldProblems answer field="aggregate"/></div>
                <div hidden=move || kind.get() == "absence"><Choice id="rule-op" label="Comparison" options=Signal::derive(|| plain(Op::ALL, Op::as_str)) value=op set=set_op/>
                    <FieldProblems answer field="op"/></div>
                <div hidden=move || kind.get() == "absence"><label for="rule-threshold">"Threshold"</label>
                    <input id="rule-threshold" type="text" inputmode="decimal" prop:value=threshold on:input=move |ev| set_threshold.set(event_target_value(&ev))/>
                    <FieldProblems answer field="threshold"/></div>
                <div hidden=move || RuleKind::parse(&kind.get()).is_some_and(|k| !k.has_window())><label for="rule-window">"Window (s)"</label>
                    <input id="rule-window" type="text" inputmode="numeric" prop:value=window on:input=move |ev| set_window.set(event_target_value(&ev))/>
                    <FieldProblems answer field="window_secs"/></div>
                <div><label for="rule-for">"Holds for (s) before firing"</label>
                    <input id="rule-for" type="text" inputmode="numeric" prop:value=for_secs on:input=move |ev| set_for_secs.set(event_target_value(&ev))/>
                    <FieldProblems answer field="for_secs"/></div>
                <div><label for="rule-resolve">"False for (s) before resolving"</label>
                    <input id="rule-resolve" type="text" inputmode="numeric" prop:value=resolve_after on:input=move |ev| set_resolve_after.set(event_target_value(&ev))/>
                    <FieldProblems answer field="resolve_after_secs"/></div>
                <div><Choice id="rule-severity" label="Severity" options=Signal::derive(|| plain(Severity::ALL, Severity::as_str)) value=severity set=set_severity/>
                    <FieldProblems answer field="severity"/></div>
            </div>
            <fieldset>
                <legend>"Scope (empty: every node) and channels"</legend>
                <div class="grid2">
                    <div><label for="rule-clusters">"Clusters (names, comma-separated)"</label>
                        <input id="rule-clusters" type="text" prop:value=clusters on:input=move |ev| set_clusters.set(event_target_value(&ev))/>
                        <FieldProblems answer field="scope.clusters"/></div>
                    <div><label for="rule-labels">"Labels (key=value, all must match)"</label>
                        <input id="rule-labels" type="text" class="mono" prop:value=labels on:input=move |ev| set_labels.set(event_target_value(&ev))/>
                        <FieldProblems answer field="scope.labels"/></div>
                    <div><label for="rule-nodes">"Node ids"</label>
                        <input id="rule-nodes" type="text" class="mono" prop:value=nodes on:input=move |ev| set_nodes.set(event_target_value(&ev))/>
                        <FieldProblems answer field="scope.node_ids"/></div>
                    <div><label for="rule-channels">"Channels to notify (names)"</label>
                        <input id="rule-channels" type="text" prop:value=channels on:input=move |ev| set_channels.set(event_target_value(&ev))/>
                        <FieldProblems answer field="channels"/></div>
                </div>
            </fieldset>
            <button type="submit" data-testid="rule-create" disabled=move || save.pending().get()>"Create rule"</button>
            <FieldProblems answer field=""/>
            {move || matches!(save.value().get(), Some(Ok(Ok(_)))).then(|| view! {
                <p class="muted" role="status">"Saved; it appears above in a moment."</p>
            })}
        </form>
        }.into_any())}
        </Suspense>
    }
}

#[component]
pub fn ChannelsPage() -> impl IntoView {
    let tick = use_tick();
    let add = Action::new(|c: &SaveChannel| create_channel(c.clone()));
    let remove = Action::new(|id: &String| delete_channel(id.clone()));
    let test = Action::new(|id: &String| test_channel(id.clone()));
    let list = Resource::new(
        move || (tick.get(), add.version().get(), remove.version().get()),
        |_| get_channels(),
    );
    let (name, set_name) = signal(String::new());
    let (kind, set_kind) = signal("webhook".to_owned());
    let (url, set_url) = signal(String::new());
    let (secret, set_secret) = signal(String::new());
    let answer = Signal::derive(move || add.value().get());
    view! {
        <Title text="Notification channels · Nerve"/>
        <h1>"Notification channels"</h1>
        <AlertNav/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(l) if l.channels.is_empty() => view! { <p class="muted">"No channels yet."</p> }.into_any(),
                    Ok(l) => {
                        let rows = l.channels.into_iter().map(|c| {
                            let (id, id2) = (c.channel_id.clone(), c.channel_id.clone());
                            view! {
                                <tr data-channel=c.name.clone()>
                                    <td>{c.name.clone()}</td>
                                    <td>{c.kind.clone()}</td>
                                    <td class="mono small">{c.url.clone()}</td>
                                    <td>{if c.has_secret { "signed" } else { "" }}</td>
                                    <td>{can(Right::Admin).then(|| view! {
                                        <button type="button" on:click=move |_| { test.dispatch(id.clone()); }>"Send test"</button>
                                        " "
                                        <button type="button" on:click=move |_| { remove.dispatch(id2.clone()); }>"Delete"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Channels"</caption>
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Kind"</th><th scope="col">"Where"</th>
                                    <th scope="col">"Signature"</th><th scope="col"></th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
        <p role="status" data-testid="test-result">
            {move || test.value().get().map(|r| match r {
                Ok(r) if r.delivered => format!("Delivered after {} attempt(s).", r.attempts.len()),
                Ok(r) => format!(
                    "Not delivered: {}",
                    r.attempts.last().map(|a| a.error.clone()).unwrap_or_default()
                ),
                Err(e) => e.to_string(),
            })}
        </p>
        <Suspense fallback=|| ()>
        {move || can(Right::Admin).then(|| view! {
        <h2>"New channel"</h2>
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            add.dispatch(SaveChannel { name: name.get(), kind: kind.get(), url: url.get(), secret: secret.get() });
        }>
            <div class="grid2">
                <div><label for="channel-name">"Name"</label>
                    <input id="channel-name" type="text" prop:value=name on:input=move |ev| set_name.set(event_target_value(&ev))/>
                    <FieldProblems answer field="name"/></div>
                <div><Choice id="channel-kind" label="Kind" options=Signal::derive(|| plain(ChannelKind::ALL, ChannelKind::as_str)) value=kind set=set_kind/>
                    <FieldProblems answer field="kind"/></div>
                <div><label for="channel-url">"URL (email: mailto:a@example.com,b@example.com)"</label>
                    <input id="channel-url" type="text" class="mono" prop:value=url on:input=move |ev| set_url.set(event_target_value(&ev))/>
                    <FieldProblems answer field="url"/></div>
                <div hidden=move || kind.get() != "webhook"><label for="channel-secret">"HMAC secret (optional; never shown again)"</label>
                    <input id="channel-secret" type="password" autocomplete="off" prop:value=secret on:input=move |ev| set_secret.set(event_target_value(&ev))/>
                    <FieldProblems answer field="secret"/></div>
            </div>
            <button type="submit" data-testid="channel-create">"Create channel"</button>
            <FieldProblems answer field=""/>
        </form>
        }.into_any())}
        </Suspense>
    }
}
