//! The API's OpenAPI 3.1 document, `GET /api/v1/openapi.json`: derived from the handlers'
//! `#[utoipa::path]` attributes and the contract's types, then completed from [`ROUTES`] — the
//! status each route answers on success, the right it needs (`x-nerve-right`, and the bearer
//! scheme), the errors it can answer, and the compatibility paths, which share their handlers'
//! operations. Nothing in it is written by hand.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, PathItem, Ref, RefOr, Response, ResponseBuilder};

use super::error::ErrorBody;
use super::{ROUTES, Route};
use crate::dto::auth::Right;
use crate::dto::fleet::{NodeSort, SortOrder};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nerve",
        description = "The control plane of a compute fleet: nodes and their inventory and \
            metrics, tasks run on chosen nodes with every node's output, clusters, alerting, \
            remediation, identities and the audit trail. Every route but the public ones needs \
            `Authorization: Bearer <token>`; `x-nerve-right` names the right it needs.",
    ),
    paths(
        super::fleet::health,
        serve,
        super::timed::prometheus,
        super::install::script,
        super::install::download,
        super::install::checksum,
        super::fleet::summary,
        super::fleet::list_nodes,
        super::fleet::node_detail,
        super::fleet::node_metrics,
        super::fleet::set_labels,
        super::fleet::set_maintenance,
        super::clusters::list_clusters,
        super::clusters::create_cluster,
        super::clusters::cluster_detail,
        super::clusters::rename_cluster,
        super::clusters::delete_cluster,
        super::clusters::assign_node,
        super::clusters::unassign_node,
        super::alerts::list_channels,
        super::alerts::create_channel,
        super::alerts::delete_channel,
        super::alerts::test_channel,
        super::alerts::list_alerts,
        super::alerts::alert_history,
        super::alerts::list_rules,
        super::alerts::create_rule,
        super::alerts::rule_detail,
        super::alerts::update_rule,
        super::alerts::delete_rule,
        super::alerts::list_silences,
        super::alerts::create_silence,
        super::alerts::delete_silence,
        super::remediation::list_policies,
        super::remediation::create_policy,
        super::remediation::policy_detail,
        super::remediation::update_policy,
        super::remediation::delete_policy,
        super::remediation::list_runs,
        super::remediation::breaker,
        super::remediation::reset_breaker,
        super::tasks::create_task,
        super::tasks::list_tasks,
        super::tasks::task_detail,
        super::tasks::cancel_task,
        super::tasks::task_output,
        super::tasks::task_output_live,
        super::auth::me,
        super::auth::list_tokens,
        super::auth::create_token,
        super::auth::rotate_token,
        super::auth::revoke_token,
        super::auth::list_audit,
        super::auth::list_enrollments,
        super::auth::create_enrollment,
        super::auth::revoke_enrollment,
        super::auth::enroll,
        super::auth::renew_credentials,
        super::auth::list_credentials,
        super::auth::revoke_credentials,
        super::cnet::health,
        super::cnet::server_node,
        super::cnet::resources,
        super::cnet::usage,
    ),
    // Schemas only query parameters name (parameters register none of their own).
    components(schemas(ErrorBody, NodeSort, SortOrder)),
)]
struct Handlers;

/// The document, built once per process.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = Handlers::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        complete(&mut doc);
        doc
    })
}

/// The document as JSON, serialized once per process.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().expect("the document serializes"))
}

/// This document: every route of the API with its parameters, bodies, answers and rights.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1", body = serde_json::Value)),
)]
pub(super) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// The methods the routes use (besides `ANY`), as `ROUTES` spells them.
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// Completes the derived document from [`ROUTES`].
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token; `POST /api/v1/enroll` takes an enrollment token instead.",
                    ))
                    .build(),
            ),
        );
    for route in ROUTES.iter().filter(|r| r.method != "ANY") {
        if operation(doc, route).is_none()
            && let Some(shared) = shared_operation(doc, route)
        {
            let item = doc
                .paths
                .paths
                .entry(route.rule.route.to_owned())
                .or_default();
            *slot(item, route.method) = Some(shared);
        }
        if let Some(op) = operation(doc, route) {
            describe(op, route);
        }
    }
}

/// A compatibility path's operation: its handler's own, under its own id and tag.
fn shared_operation(doc: &utoipa::openapi::OpenApi, route: &Route) -> Option<Operation> {
    let name = route.handler.rsplit("::").next()?.trim();
    let (path, method, op) = doc.paths.paths.iter().find_map(|(path, item)| {
        METHODS.into_iter().find_map(|m| {
            let op = slot_ref(item, m).as_ref()?;
            (op.operation_id.as_deref() == Some(name)).then_some((path, m, op))
        })
    })?;
    let mut op = op.clone();
    let alias: String = route
        .rule
        .route
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    op.operation_id = Some(format!("{name}{alias}"));
    op.tags = Some(vec!["compatibility".to_owned()]);
    op.description = Some(format!("The same as `{method} {path}`, for older clients."));
    Some(op)
}

/// Adds what the policy says of `route` to its operation: the success status, the right and
/// the errors.
fn describe(op: &mut Operation, route: &Route) {
    let responses = &mut op.responses.responses;
    for response in responses.values_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            response.description = "Done.".to_owned();
        }
    }
    if route.rule.success != 200
        && let Some(ok) = responses.remove("200")
    {
        responses.insert(route.rule.success.to_string(), ok);
    }
    let right = route.rule.right;
    op.extensions
        .get_or_insert_with(Default::default)
        .insert("x-nerve-right".into(), serde_json::json!(right));
    let mut errors = vec![(
        "503",
        "A dependency (NATS, ClickHouse) cannot answer now; retry.",
    )];
    if right != Right::Public {
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        errors.push(("401", "No valid token."));
        errors.push(("403", "The token's role lacks the route's right."));
    }
    let parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if parameters || op.request_body.is_some() {
        errors.push((
            "400",
            "A bad path, query or body; `fields` names each problem.",
        ));
    }
    if parameters {
        errors.push(("404", "The path or a filter names nothing that exists."));
    }
    if op.request_body.is_some() {
        errors.push(("413", "The body is too large."));
    }
    for (status, description) in errors {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    }
}

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn operation<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    route: &Route,
) -> Option<&'a mut Operation> {
    let item = doc.paths.paths.get_mut(route.rule.route)?;
    slot(item, route.method).as_mut()
}

fn slot<'a>(item: &'a mut PathItem, method: &str) -> &'a mut Option<Operation> {
    match method {
        "GET" => &mut item.get,
        "PUT" => &mut item.put,
        "POST" => &mut item.post,
        "DELETE" => &mut item.delete,
        "PATCH" => &mut item.patch,
        other => unreachable!("no route uses {other}"),
    }
}

fn slot_ref<'a>(item: &'a PathItem, method: &str) -> &'a Option<Operation> {
    match method {
        "GET" => &item.get,
        "PUT" => &item.put,
        "POST" => &item.post,
        "DELETE" => &item.delete,
        _ => &item.patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(item: &PathItem) -> impl Iterator<Item = &'static str> + '_ {
        METHODS.into_iter().filter(|m| slot_ref(item, m).is_some())
    }

    #[test]
    fn every_route_of_the_router_is_in_the_document_with_its_success_and_right() {
        let doc = document();
        let mut missing = Vec::new();
        for route in ROUTES.iter().filter(|r| r.method != "ANY") {
            let op = doc
                .paths
                .paths
                .get(route.rule.route)
                .and_then(|item| slot_ref(item, route.method).as_ref());
            let Some(op) = op else {
                missing.push(format!("{} {}", route.method, route.rule.route));
                continue;
            };
            let success = route.rule.success.to_string();
            assert!(
                op.responses.responses.contains_key(&success),
                "{} {} documents {success}",
                route.method,
                route.rule.route
            );
            let right = op.extensions.as_ref().and_then(|e| e.get("x-nerve-right"));
            assert_eq!(right, Some(&serde_json::json!(route.rule.right)));
            assert_eq!(op.security.is_some(), route.rule.right != Right::Public);
        }
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );
    }

    #[test]
    fn the_document_has_no_operation_the_router_lacks_and_ids_are_unique() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in &doc.paths.paths {
            for method in methods(item) {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.rule.route == path && r.method == method),
                    "{method} {path} is documented but not routed"
                );
                let op = slot_ref(item, method).as_ref().expect("listed");
                let id = op.operation_id.clone().expect("every operation has an id");
                assert!(ids.insert(id.clone()), "operation id {id} twice");
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_it_references() {
        let json: serde_json::Value = serde_json::from_str(json()).expect("JSON");
        assert!(
            json["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let schemas = json["components"]["schemas"].as_object().expect("schemas");
        let text = json.to_string();
        let undefined: std::collections::BTreeSet<_> = text
            .split("\"$ref\":\"#/components/schemas/")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .filter(|name| !schemas.contains_key(*name))
            .collect();
        assert!(
            undefined.is_empty(),
            "referenced, not defined: {undefined:?}"
        );
    }
}
