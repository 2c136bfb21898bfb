//! The guard every call passes: who is calling (a token: `Authorization: Bearer` for the API,
//! the session cookie for the console), whether their role has the route's right (deny by
//! default: a route missing from the policy is refused), and for a change, its audit entry —
//! written before the first change the call makes (through [`nerve_ingest::gate`]), or after
//! the call when it changed nothing. A refused call (401/403) is audited too. A change whose
//! entry cannot be written is not made: the call is answered 503.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::audit::{Draft, Outcome, body_digest};
use crate::auth::keyring::Refusal;
use crate::dto::auth::{Identity, Right};
use crate::error::ApiError;
use crate::http::applied;

/// The console's session cookie: the token itself, HttpOnly and SameSite=Strict.
pub const SESSION_COOKIE: &str = "nerve_session";

/// Largest body a change may carry (the JSON extractor's own limit is the same).
const MAX_BODY_BYTES: usize = 2 << 20;

/// Where a caller's token is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>` (the REST API).
    Bearer,
    /// The [`SESSION_COOKIE`] (the console's pages and server functions).
    Cookie,
}

/// What the policy says of one route.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The route template as the router matched it (`/api/v1/clusters/{id}`).
    pub route: &'static str,
    pub right: Right,
    /// The status the route answers when it makes its change (recorded in an entry written
    /// before the change).
    pub success: u16,
}

/// The `/api` middleware: looks the matched route up in [`crate::http::ROUTES`].
pub async fn api_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let rule = crate::http::rule_of(request.method(), &matched);
    if rule.is_none() {
        // A path of the API asked with a method it does not take: 405 with what it takes.
        let allow: Vec<&str> = crate::http::ROUTES
            .iter()
            .filter(|r| r.rule.route == matched)
            .map(|r| r.method)
            .collect();
        if !allow.is_empty() {
            return ApiError::MethodNotAllowed(allow.join(", ")).into_response();
        }
    }
    let change = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = admit(&state, rule, Credential::Bearer, change, request, next).await;
    // The route's success status is the table's, so the audit entry and the answer agree.
    if let Some(rule) = rule
        && response.status() == StatusCode::OK
        && let Ok(status) = StatusCode::from_u16(rule.success)
    {
        *response.status_mut() = status;
    }
    response
}

/// What the audit trail records of a call before anything is known of its caller.
pub async fn draft_of(parts: &mut axum::http::request::Parts, route: &str) -> Draft {
    let targets = RawPathParams::from_request_parts(parts, &())
        .await
        .map(|params| params.iter().map(|(_, v)| v.to_owned()).collect())
        .unwrap_or_default();
    Draft {
        method: parts.method.to_string(),
        route: route.to_owned(),
        targets,
        peer: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default(),
        user_agent: header_text(&parts.headers, header::USER_AGENT),
        ..Draft::default()
    }
}

/// Checks and audits one call under `rule` (`None`: the route has no policy, so it is
/// refused), then runs it. A `change` is audited whatever its answer; other calls only when
/// refused.
pub async fn admit(
    state: &AppState,
    rule: Option<Rule>,
    credential: Credential,
    change: bool,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = rule.map_or_else(|| parts.uri.path().to_owned(), |r| r.route.to_owned());
    let mut draft = draft_of(&mut parts, &route).await;
    let Some(rule) = rule else {
        tracing::error!(route = %draft.route, method = %draft.method, "route has no policy: refused");
        return deny(
            state,
            draft,
            ApiError::Forbidden("this route has no policy".into()),
        )
        .await;
    };
    if rule.right == Right::Public {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let presented = match credential {
        Credential::Bearer => bearer(&parts.headers),
        Credential::Cookie => session_cookie(&parts.headers),
    };
    let identity = match state
        .keyring()
        .check(presented.as_deref(), crate::time::now_ms() as i64)
    {
        Ok(identity) => identity,
        Err(Refusal::NotReady) => {
            return ApiError::Unavailable("tokens are not loaded yet; retry".into())
                .into_response();
        }
        Err(refusal) => {
            state.metrics_auth_failure(refusal.reason());
            tracing::info!(reason = refusal.reason(), route = %draft.route, "call refused: 401");
            return deny(
                state,
                draft,
                ApiError::Unauthorized("a valid token is needed".into()),
            )
            .await;
        }
    };
    draft.actor = Some(identity.clone());
    if !identity.role.allows(rule.right) {
        state.metrics_auth_failure("role");
        let message = format!(
            "role {} may not do this (needs {:?})",
            identity.role.as_str(),
            rule.right
        );
        return deny(state, draft, ApiError::Forbidden(message)).await;
    }
    parts.extensions.insert(identity);
    if let Err(refused) = await_min_position(state, &parts).await {
        return refused.into_response();
    }
    if !change {
        return next.run(Request::from_parts(parts, body)).await;
    }

    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        draft.status = StatusCode::PAYLOAD_TOO_LARGE.as_u16();
        return answered(state, draft, ApiError::TooLarge.into_response()).await;
    };
    draft.body_sha256 = body_digest(&bytes);
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let gate = {
        let (state, draft) = (state.clone(), draft.clone());
        nerve_ingest::gate::Gate::new(move || {
            let (state, mut draft) = (state.clone(), draft.clone());
            async move {
                draft.status = rule.success;
                draft.outcome = Outcome::Applied;
                state.auditor().record(draft).await.map_err(|e| {
                    tracing::error!(error = %e, "audit entry not written: change refused");
                    "the audit trail cannot record the change".to_owned()
                })
            }
        })
    };
    let response = gate.scope(next.run(request)).await;
    if gate.outcome().is_some() {
        return once_applied(state, &gate, response).await;
    }
    draft.status = response.status().as_u16();
    answered(state, draft, response).await
}

/// A change's answer once the projections it affects applied it (or the wait ran out), with
/// its positions ([`applied`]).
async fn once_applied(
    state: &AppState,
    gate: &nerve_ingest::gate::Gate,
    mut response: Response,
) -> Response {
    let positions = applied::latest(&gate.positions());
    if positions.is_empty() {
        return response;
    }
    let wait = std::time::Duration::from_millis(state.config().applied_wait_ms);
    let done = match state.log().jetstream() {
        Ok(js) if response.status().is_success() && !wait.is_zero() => {
            applied::wait(js, &positions, wait).await
        }
        _ => false,
    };
    let headers = response.headers_mut();
    if let Ok(v) = applied::format(&positions).parse() {
        headers.insert(applied::POSITION, v);
    }
    headers.insert(
        applied::APPLIED,
        header::HeaderValue::from_static(if done { "true" } else { "false" }),
    );
    response
}

/// Waits for the positions a call asks to see (`Nerve-Min-Position` or `?min_position=`).
async fn await_min_position(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<(), ApiError> {
    let query =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0.get("min_position").cloned())
            .unwrap_or_default();
    let asked = parts
        .headers
        .get(applied::MIN_POSITION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query);
    let Some(asked) = asked else {
        return Ok(());
    };
    let positions = applied::parse(&asked).map_err(ApiError::BadRequest)?;
    let js = state
        .log()
        .jetstream()
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let wait = std::time::Duration::from_millis(state.config().applied_wait_ms.max(1));
    if applied::wait(js, &positions, wait).await {
        Ok(())
    } else {
        Err(ApiError::Unavailable(format!(
            "position {asked} is not applied yet; retry"
        )))
    }
}

/// Audits a call that changed nothing, then answers it; 503 if the entry cannot be written.
async fn answered(state: &AppState, mut draft: Draft, response: Response) -> Response {
    draft.outcome = Outcome::Answered;
    match state.auditor().record(draft).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, "audit entry not written");
            ApiError::Unavailable("the audit trail cannot record the call; retry".into())
                .into_response()
        }
    }
}

/// Audits a refused call, then answers the refusal (even when the entry cannot be written:
/// nothing changed).
pub async fn deny(state: &AppState, mut draft: Draft, error: ApiError) -> Response {
    draft.status = error.status().as_u16();
    draft.outcome = Outcome::Denied;
    if let Err(e) = state.auditor().record(draft).await {
        tracing::warn!(error = %e, "refused call not audited");
    }
    error.into_response()
}

fn header_text(headers: &axum::http::HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
        .unwrap_or_default()
}

/// The token in `Authorization: Bearer …`.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The token in the session cookie.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The caller, in a handler behind the guard.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Caller {
    /// As `requested_by` fields record the caller.
    pub fn who(&self) -> String {
        self.0.who()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthorized("a valid token is needed".into()))
    }
}
