//! The API reference: every operation of the API's OpenAPI document, by tag — method, path,
//! what it does, the right it needs, its request body and its success answer — with a link to
//! the document itself (`/api/v1/openapi.json`) for tools.

use leptos::prelude::*;
use leptos_meta::Title;

use super::LoadError;
use crate::data::{ApiOperation, get_api_reference};

#[component]
pub fn ApiPage() -> impl IntoView {
    let operations = Resource::new(|| (), |()| get_api_reference());
    view! {
        <Title text="API · Nerve"/>
        <h1>"API reference"</h1>
        <p>
            "The REST API as its OpenAPI 3.1 document describes it, generated from the server's \
            own handlers and types. Client generators, Postman and fuzzers read the document: "
            <a href="/api/v1/openapi.json" rel="external" data-testid="openapi-document">
                "/api/v1/openapi.json"</a>
            ". Every call but the public ones sends " <code>"Authorization: Bearer <token>"</code>
            " (tokens: " <a href="/tokens">"Tokens"</a> ")."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match operations.await {
                    Err(e) => view! { <LoadError message=e.to_string()/> }.into_any(),
                    Ok(ops) => by_tag(ops).into_iter().map(|(tag, ops)| view! {
                        <Tag tag ops/>
                    }).collect_view().into_any(),
                }
            })}
        </Transition>
    }
}

/// The operations grouped by tag, tags in the order they first appear.
fn by_tag(ops: Vec<ApiOperation>) -> Vec<(String, Vec<ApiOperation>)> {
    let mut groups: Vec<(String, Vec<ApiOperation>)> = Vec::new();
    for op in ops {
        match groups.iter_mut().find(|(tag, _)| *tag == op.tag) {
            Some((_, list)) => list.push(op),
            None => groups.push((op.tag.clone(), vec![op])),
        }
    }
    groups
}

#[component]
fn Tag(tag: String, ops: Vec<ApiOperation>) -> AnyView {
    let rows = ops
        .into_iter()
        .map(|op| {
            let operation = format!("{} {}", op.method, op.path);
            view! {
                <tr data-operation=operation>
                    <td><code class="method">{op.method}</code></td>
                    <td><code>{op.path}</code></td>
                    <td>{op.summary}</td>
                    <td>{op.right}</td>
                    <td><code>{op.request.unwrap_or_else(|| "—".into())}</code></td>
                    <td><code>{op.success}</code></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" data-tag=tag.clone()>
            <h2>{tag.clone()}</h2>
            <div class="table-wrap"><table>
                <caption class="sr-only">{format!("{tag} operations")}</caption>
                <thead><tr>
                    <th scope="col">"Method"</th><th scope="col">"Path"</th>
                    <th scope="col">"What it does"</th><th scope="col">"Right"</th>
                    <th scope="col">"Body"</th><th scope="col">"Answers"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        </section>
    }
    .into_any()
}
