//! Tasks: the list (`/tasks`), the new-task form with a preview of the nodes it will reach
//! (`/tasks/new`), and a task's page (`/tasks/:id`) with its counts, a per-node status grid and
//! the selected node's output (`?node=`), refreshing every second while the page is open.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use nerve_api::dto::auth::Right;
use nerve_api::dto::{
    fleet::NodeStatus, tasks::CreateTask, tasks::TaskCounts, tasks::TaskListQuery,
    tasks::TaskTargets,
};

use super::LoadError;
use crate::data::{
    cancel_task, create_task, get_task_detail, get_task_output, get_tasks, preview_targets,
};
use crate::format;
use crate::live::{FAST_REFRESH_MS, use_tick, use_tick_every};

/// A state's badge class (the status colours: green done well, amber in flight or not done,
/// red failed).
fn state_class(state: &str) -> &'static str {
    match state {
        "succeeded" => "badge online",
        "failed" | "timed_out" | "unreachable" => "badge offline",
        _ => "badge suspect",
    }
}

/// `3 succeeded · 1 failed · …`, only the non-zero states.
fn counts_text(c: &TaskCounts) -> String {
    let parts: Vec<String> = [
        (c.succeeded, "succeeded"),
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.cancelled, "cancelled"),
        (c.unreachable, "unreachable"),
        (c.running, "running"),
        (c.queued, "queued"),
        (c.accepted, "accepted"),
        (c.dispatched, "dispatched"),
        (c.expected, "waiting"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(" · ")
    }
}

#[component]
pub fn TasksPage() -> impl IntoView {
    let tick = use_tick();
    let page = Resource::new(
        move || tick.get(),
        |_| {
            get_tasks(TaskListQuery {
                limit: Some(50),
                offset: None,
            })
        },
    );
    view! {
        <Title text="Tasks · Nerve"/>
        <div class="section-head">
            <h1>"Tasks"</h1>
            <Suspense fallback=|| ()>
                <Show when=|| crate::session::can(Right::Operate)>
                    <A href="/tasks/new" attr:class="button">"New task"</A>
                </Show>
            </Suspense>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(p) if p.tasks.is_empty() => view! { <p class="muted">"No tasks yet."</p> }.into_any(),
                    Ok(p) => {
                        let rows = p.tasks.into_iter().map(|t| {
                            let done = t.counts.done();
                            let href = format!("/tasks/{}", t.task_id);
                            let label = t.task_id.clone();
                            view! {
                                <tr data-task-id=t.task_id.clone()>
                                    <td><A href=href><span class="mono small">{label}</span></A></td>
                                    <td>{t.kind.clone()}</td>
                                    <td class="small">{format::time(&t.requested_at)}</td>
                                    <td>{t.requested_by.clone()}</td>
                                    <td>{format!("{done} / {}", t.expected)}</td>
                                    <td class="small">{counts_text(&t.counts)}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap"><table>
                                <caption class="sr-only">"Tasks"</caption>
                                <thead><tr><th scope="col">"Task"</th><th scope="col">"Kind"</th>
                                    <th scope="col">"Requested"</th><th scope="col">"By"</th>
                                    <th scope="col">"Done"</th><th scope="col">"States"</th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table></div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// Splits a list typed by a person: commas, spaces or new lines.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[component]
pub fn NewTaskPage() -> impl IntoView {
    let (kind, set_kind) = signal("command".to_string());
    let (command, set_command) = signal(String::new());
    let (script, set_script) = signal("#!/bin/sh\n".to_string());
    let (hook, set_hook) = signal(String::new());
    let (nodes, set_nodes) = signal(String::new());
    let (offline_too, set_offline_too) = signal(false);
    let (timeout, set_timeout) = signal("300".to_string());
    let (max_output, set_max_output) = signal("1048576".to_string());
    let (batch_percent, set_batch_percent) = signal(String::new());

    let targets = move || TaskTargets {
        node_ids: words(&nodes.get()),
        status: if offline_too.get() {
            vec![NodeStatus::Online, NodeStatus::Suspect, NodeStatus::Offline]
        } else {
            vec![NodeStatus::Online]
        },
        ..TaskTargets::default()
    };
    let request = move || {
        let mut r = CreateTask {
            kind: kind.get(),
            targets: targets(),
            timeout_secs: timeout.get().trim().parse().ok(),
            max_output_bytes: max_output.get().trim().parse().ok(),
            batch_percent: batch_percent.get().trim().parse().ok(),
            ..CreateTask::default()
        };
        match r.kind.as_str() {
            "command" => r.argv = words(&command.get()),
            "script" => r.script = script.get(),
            _ => {
                let mut parts = words(&hook.get()).into_iter();
                r.hook = parts.next().unwrap_or_default();
                r.args = parts.collect();
            }
        }
        r
    };
    let preview = Resource::new(targets, preview_targets);
    let create = Action::new(move |r: &CreateTask| create_task(r.clone()));
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(created)) = create.value().get() {
            navigate(&format!("/tasks/{}", created.task_id), Default::default());
        }
    });

    view! {
        <Title text="New task · Nerve"/>
        <p class="crumbs"><A href="/tasks">"Tasks"</A>" / new"</p>
        <h1>"New task"</h1>
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            create.dispatch(request());
        }>
            <fieldset>
                <legend>"What to run"</legend>
                <div class="chips" role="radiogroup" aria-label="Kind">
                    {["command", "script", "hook"].into_iter().map(|k| view! {
                        <label class="chip">
                            <input type="radio" name="kind" value=k prop:checked=move || kind.get() == k
                                on:change=move |_| set_kind.set(k.to_string())/>
                            {k}
                        </label>
                    }).collect_view()}
                </div>
                <div hidden=move || kind.get() != "command">
                    <label for="task-command">"Command (program and arguments, split at spaces)"</label>
                    <input id="task-command" class="mono" type="text" placeholder="uptime"
                        prop:value=command on:input=move |ev| set_command.set(event_target_value(&ev))/>
                </div>
                <div hidden=move || kind.get() != "script">
                    <label for="task-script">"Script (run by /bin/sh)"</label>
                    <textarea id="task-script" class="mono" rows="6"
                        prop:value=script on:input=move |ev| set_script.set(event_target_value(&ev))></textarea>
                </div>
                <div hidden=move || kind.get() != "hook">
                    <label for="task-hook">"Hook name and arguments (from the agent's hooks directory)"</label>
                    <input id="task-hook" class="mono" type="text" placeholder="drain-node --now"
                        prop:value=hook on:input=move |ev| set_hook.set(event_target_value(&ev))/>
                </div>
            </fieldset>
            <fieldset>
                <legend>"Where"</legend>
                <label for="task-nodes">"Node ids (empty: every node)"</label>
                <textarea id="task-nodes" class="mono" rows="2"
                    prop:value=nodes on:input=move |ev| set_nodes.set(event_target_value(&ev))></textarea>
                <label class="check"><input type="checkbox" prop:checked=offline_too
                    on:change=move |ev| set_offline_too.set(event_target_checked(&ev))/>
                    " Include suspect and offline nodes (they become unreachable if they do not answer)"</label>
                <p class="muted" data-testid="task-preview" aria-live="polite">
                    <Transition fallback=|| "Resolving…">
                        {move || Suspend::new(async move {
                            match preview.await {
                                Ok(Ok(n)) if n.len() <= 5 => format!("Will run on {} node(s): {}", n.len(), n.join(", ")),
                                Ok(Ok(n)) => format!("Will run on {} nodes: {}, …", n.len(), n[..5].join(", ")),
                                Ok(Err(reason)) => format!("No nodes: {reason}"),
                                Err(e) => format!("Cannot resolve the targets now: {e}"),
                            }
                        })}
                    </Transition>
                </p>
            </fieldset>
            <fieldset>
                <legend>"Options"</legend>
                <div class="grid3">
                    <div><label for="task-timeout">"Timeout (s)"</label>
                        <input id="task-timeout" type="number" min="1" prop:value=timeout
                            on:input=move |ev| set_timeout.set(event_target_value(&ev))/></div>
                    <div><label for="task-output">"Output kept per node (bytes)"</label>
                        <input id="task-output" type="number" min="0" prop:value=max_output
                            on:input=move |ev| set_max_output.set(event_target_value(&ev))/></div>
                    <div><label for="task-batch">"Rollout: % of nodes at a time (empty: all)"</label>
                        <input id="task-batch" type="number" min="1" max="100" prop:value=batch_percent
                            on:input=move |ev| set_batch_percent.set(event_target_value(&ev))/></div>
                </div>
            </fieldset>
            <button type="submit" data-testid="task-submit" disabled=move || create.pending().get()>"Run"</button>
            {move || match create.value().get() {
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.to_string()}</p> }),
                _ => None,
            }}
        </form>
    }
}

#[component]
pub fn TaskPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.get().get("id").unwrap_or_default());
    let selected = Memo::new(move |_| query.get().get("node"));
    // A task's grid and output follow the work closely.
    let tick = use_tick_every(FAST_REFRESH_MS);
    let detail = Resource::new(
        move || (id.get(), tick.get()),
        |(id, _)| get_task_detail(id),
    );
    let output = Resource::new(
        move || (id.get(), selected.get(), tick.get()),
        |(id, node, _)| async move {
            match node {
                Some(node) => get_task_output(id, node).await.map(Some),
                None => Ok(None),
            }
        },
    );
    let cancel = Action::new(move |id: &String| cancel_task(id.clone()));

    view! {
        <Title text=move || format!("Task {} · Nerve", id.get())/>
        <p class="crumbs"><A href="/tasks">"Tasks"</A>" / "<span class="mono">{move || id.get()}</span></p>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(None) => view! { <p class="muted" data-testid="task-pending">"Recording the task…"</p> }.into_any(),
                    Ok(Some(d)) => {
                        let s = d.summary.clone();
                        let done = s.counts.done();
                        let finished = done == s.expected;
                        let cells = d.nodes.clone().into_iter().map(|n| {
                            let href = format!("/tasks/{}?node={}", s.task_id, n.node_id);
                            let title = format!("{}: {}", n.node_id, n.state);
                            let class = format!("cell {}", state_class(&n.state));
                            let label = n.state.clone();
                            view! {
                                <li><A href=href attr:class=class
                                    attr:title=title.clone() attr:aria-label=title attr:data-node=n.node_id.clone()
                                    attr:data-state=n.state.clone()>{label}</A></li>
                            }
                        }).collect_view();
                        let rows = d.nodes.clone().into_iter().map(|n| {
                            let href = format!("/tasks/{}?node={}", s.task_id, n.node_id);
                            let label = n.node_id.clone();
                            view! {
                            <tr data-node=n.node_id.clone()>
                                <td><A href=href><span class="mono small">{label}</span></A></td>
                                <td><span class=state_class(&n.state)>{n.state.clone()}</span></td>
                                <td>{n.exit_code.map(|c| c.to_string()).or(n.signal.map(|s| format!("signal {s}"))).unwrap_or_else(|| "—".into())}</td>
                                <td>{format!("{:.1} s", n.duration_ms as f64 / 1000.0)}</td>
                                <td>{format::bytes(n.output_bytes as f64)}{n.truncated.then_some(" (truncated)")}</td>
                                <td class="small">{if n.error.is_empty() { "—".to_string() } else { n.error.clone() }}</td>
                            </tr>
                        }}).collect_view();
                        let task_id = s.task_id.clone();
                        view! {
                            <div class="section-head">
                                <h1>{format!("{} task", s.kind)}</h1>
                                <span data-testid="task-progress">{format!("{done} of {} nodes done", s.expected)}</span>
                                {(!finished && !d.cancel_requested && crate::session::can(Right::Operate)).then(|| view! {
                                    <button type="button" data-testid="task-cancel"
                                        on:click=move |_| { cancel.dispatch(task_id.clone()); }>"Cancel"</button>
                                })}
                            </div>
                            <p class="muted" data-testid="task-counts">{counts_text(&s.counts)}</p>
                            <pre class="panel mono small">{serde_json::to_string_pretty(&d.spec).unwrap_or_default()}</pre>
                            <section aria-labelledby="grid-h">
                                <h2 id="grid-h">"Nodes"</h2>
                                <ul class="grid-cells" data-testid="task-grid">{cells}</ul>
                                <div class="table-wrap"><table>
                                    <thead><tr><th scope="col">"Node"</th><th scope="col">"State"</th><th scope="col">"Exit"</th>
                                        <th scope="col">"Duration"</th><th scope="col">"Output"</th><th scope="col">"Error"</th></tr></thead>
                                    <tbody>{rows}</tbody>
                                </table></div>
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match output.await {
                    Ok(Some(o)) => Some(view! {
                        <section class="panel" aria-labelledby="out-h" data-testid="task-output">
                            <h2 id="out-h">{format!("Output of {}", o.node_id)}{o.truncated.then_some(" (truncated)")}</h2>
                            <h3>"stdout"</h3><pre class="mono small" data-testid="task-stdout">{o.stdout}</pre>
                            <h3>"stderr"</h3><pre class="mono small" data-testid="task-stderr">{o.stderr}</pre>
                        </section>
                    }.into_any()),
                    Ok(None) => Some(view! { <p class="muted">"Select a node to see its output."</p> }.into_any()),
                    Err(e) => Some(view! { <LoadError message=e.to_string()/> }.into_any()),
                }
            })}
        </Transition>
    }
}
