//! Signing in to the console: the session (the token in an HttpOnly, SameSite=Strict cookie),
//! the login, logout and "who am I" server functions, the policy of every server function
//! ([`SERVER_FNS`]), and — on the server — the guard in front of pages and server functions.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use nerve_api::dto::auth::{Identity, Right};

/// A server function as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub struct ServerFn {
    pub path: &'static str,
    pub right: Right,
    /// Whether it changes something (audited whatever its answer; reads only when refused).
    pub change: bool,
}

const fn read(path: &'static str, right: Right) -> ServerFn {
    ServerFn {
        path,
        right,
        change: false,
    }
}

const fn change(path: &'static str, right: Right) -> ServerFn {
    ServerFn {
        path,
        right,
        change: true,
    }
}

/// Every server function's endpoint with the right it needs. The console's guard refuses an
/// endpoint not listed here; a test checks that every registered server function is listed.
pub const SERVER_FNS: &[ServerFn] = &[
    read("/ui-api/login", Right::Public),
    read("/ui-api/logout", Right::Public),
    read("/ui-api/whoami", Right::Read),
    read("/ui-api/fleet-summary", Right::Read),
    read("/ui-api/api-reference", Right::Read),
    read("/ui-api/nodes", Right::Read),
    read("/ui-api/node-detail", Right::Read),
    read("/ui-api/node-metrics", Right::Read),
    change("/ui-api/node-maintenance", Right::Operate),
    read("/ui-api/tasks", Right::Read),
    read("/ui-api/task-detail", Right::Read),
    read("/ui-api/task-output", Right::Read),
    read("/ui-api/task-preview", Right::Read),
    change("/ui-api/task-create", Right::Operate),
    change("/ui-api/task-cancel", Right::Operate),
    read("/ui-api/clusters", Right::Read),
    change("/ui-api/cluster-create", Right::Operate),
    change("/ui-api/cluster-delete", Right::Operate),
    read("/ui-api/alerts", Right::Read),
    read("/ui-api/alert-history", Right::Read),
    read("/ui-api/alert-rules", Right::Read),
    change("/ui-api/alert-rule-create", Right::Admin),
    change("/ui-api/alert-rule-delete", Right::Admin),
    read("/ui-api/silences", Right::Read),
    change("/ui-api/silence-create", Right::Operate),
    change("/ui-api/silence-delete", Right::Operate),
    read("/ui-api/channels", Right::Read),
    change("/ui-api/channel-create", Right::Admin),
    change("/ui-api/channel-test", Right::Admin),
    change("/ui-api/channel-delete", Right::Admin),
    read("/ui-api/tokens", Right::Admin),
    change("/ui-api/token-create", Right::Admin),
    change("/ui-api/token-rotate", Right::Admin),
    change("/ui-api/token-revoke", Right::Admin),
    read("/ui-api/enrollments", Right::Admin),
    change("/ui-api/enrollment-create", Right::Admin),
    change("/ui-api/enrollment-revoke", Right::Admin),
    read("/ui-api/node-credentials", Right::Admin),
    change("/ui-api/node-revoke", Right::Admin),
    read("/ui-api/audit", Right::Read),
];

/// The signed-in identity, provided to every page (`None` on the login page).
#[derive(Debug, Clone, Copy)]
pub struct Session(pub Signal<Option<Identity>>);

impl Session {
    /// Whether the signed-in role has `right` (pages offer only what it has).
    pub fn can(&self, right: Right) -> bool {
        self.0.get().is_some_and(|who| who.role.allows(right))
    }
}

/// Whether the page's user may take actions needing `right`.
pub fn can(right: Right) -> bool {
    use_context::<Session>().is_some_and(|s| s.can(right))
}

/// Who is signed in.
#[server(prefix = "/ui-api", endpoint = "whoami", input = Json)]
pub async fn whoami() -> Result<Identity, ServerFnError> {
    caller().await
}

/// Checks `token` and, when it is valid, sets the session cookie. `Err` with the message to
/// show when it is not.
#[server(prefix = "/ui-api", endpoint = "login", input = Json)]
pub async fn login(token: String) -> Result<Result<Identity, String>, ServerFnError> {
    use axum::http::{HeaderValue, header};
    use nerve_api::http::guard::SESSION_COOKIE;
    let state = state()?;
    let token = token.trim().to_owned();
    let checked = state
        .keyring()
        .check(Some(&token), nerve_api::time::now_ms() as i64)
        // Only an operator token signs in (not an enrollment token).
        .and_then(|identity| {
            if nerve_api::dto::auth::Role::ALL.contains(&identity.role) {
                Ok(identity)
            } else {
                Err(nerve_api::auth::keyring::Refusal::Unknown)
            }
        });
    match checked {
        Ok(identity) => {
            let max_age = state.keyring().get(&identity.token_id).map_or(0, |t| {
                ((t.expires_at_ms - nerve_api::time::now_ms() as i64) / 1000).max(0)
            });
            let secure = if secure_transport().await {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
            );
            let value = HeaderValue::from_str(&cookie)
                .map_err(|_| ServerFnError::new("token is not a cookie value"))?;
            expect_context::<leptos_axum::ResponseOptions>()
                .insert_header(header::SET_COOKIE, value);
            Ok(Ok(identity))
        }
        Err(nerve_api::auth::keyring::Refusal::NotReady) => Ok(Err(
            "The server is still loading tokens; try again in a moment.".into(),
        )),
        Err(refusal) => {
            tracing::info!(reason = refusal.reason(), "console sign-in refused");
            let mut parts = leptos_axum::extract::<axum::http::request::Parts>().await?;
            let draft = nerve_api::audit::Draft {
                status: 401,
                outcome: nerve_api::audit::Outcome::Denied,
                ..nerve_api::http::guard::draft_of(&mut parts, "/ui-api/login").await
            };
            if let Err(e) = state.auditor().record(draft).await {
                tracing::warn!(error = %e, "refused sign-in not audited");
            }
            Ok(Err(
                "That token is not valid (wrong, expired or revoked).".into()
            ))
        }
    }
}

/// Ends the session: the cookie is cleared.
#[server(prefix = "/ui-api", endpoint = "logout", input = Json)]
pub async fn logout() -> Result<(), ServerFnError> {
    use axum::http::{HeaderValue, header};
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        nerve_api::http::guard::SESSION_COOKIE
    );
    expect_context::<leptos_axum::ResponseOptions>().insert_header(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii"),
    );
    Ok(())
}

/// Whether the console is served over TLS (then the cookie is `Secure`).
#[cfg(feature = "ssr")]
async fn secure_transport() -> bool {
    state().is_ok_and(|s| !s.config().tls_cert_file.as_os_str().is_empty())
}

/// The API's state, provided by the server as context.
#[cfg(feature = "ssr")]
pub fn state() -> Result<nerve_api::AppState, ServerFnError> {
    use_context::<nerve_api::AppState>().ok_or_else(|| ServerFnError::new("server state missing"))
}

/// The identity the guard admitted this server function call with.
#[cfg(feature = "ssr")]
pub async fn caller() -> Result<Identity, ServerFnError> {
    leptos_axum::extract::<axum::Extension<Identity>>()
        .await
        .map(|axum::Extension(who)| who)
        .map_err(|_| ServerFnError::new("not signed in"))
}

/// The guard in front of the console: server functions need the right [`SERVER_FNS`] gives
/// them (checked and audited by the API's guard, from the session cookie), must come from the
/// console's own origin and be JSON; pages need a valid session, else they redirect to
/// `/login`.
#[cfg(feature = "ssr")]
pub async fn guard(
    axum::extract::State(state): axum::extract::State<nerve_api::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::{IntoResponse, Redirect};
    use nerve_api::http::guard::{Credential, Rule, admit, deny, draft_of, session_cookie};
    let path = request.uri().path().to_owned();
    if let Some(name) = path.strip_prefix("/ui-api/") {
        if let Err(why) = same_origin_json(request.headers()) {
            tracing::info!(%path, why, "server function call refused");
            let (mut parts, _) = request.into_parts();
            let draft = draft_of(&mut parts, &path).await;
            return deny(
                &state,
                draft,
                nerve_api::error::ApiError::Forbidden(why.into()),
            )
            .await;
        }
        let found = SERVER_FNS
            .iter()
            .find(|f| f.path.strip_prefix("/ui-api/") == Some(name));
        let rule = found.map(|f| Rule {
            route: f.path,
            right: f.right,
            success: 200,
        });
        // Every server function is a POST: whether it is a change is the table's to say.
        let change = found.is_some_and(|f| f.change);
        return admit(&state, rule, Credential::Cookie, change, request, next).await;
    }
    let public = path == "/login" || path.starts_with("/pkg/") || path == "/favicon.ico";
    if public {
        return next.run(request).await;
    }
    let mut request = request;
    let signed_in = state.keyring().check(
        session_cookie(request.headers()).as_deref(),
        nerve_api::time::now_ms() as i64,
    );
    if let Ok(identity) = signed_in {
        // The page's server functions run in this request when it renders on the server.
        request.extensions_mut().insert(identity);
        next.run(request).await
    } else {
        let mut response = Redirect::to("/login").into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
        response
    }
}

/// Refuses a server function call from another site (`Sec-Fetch-Site`, `Origin`) or with a
/// form-encoded body (which a cross-site form could send without a preflight).
#[cfg(feature = "ssr")]
fn same_origin_json(headers: &axum::http::HeaderMap) -> Result<(), &'static str> {
    use axum::http::header;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err("cross-site call refused");
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if Some(host) != text(header::HOST) {
            return Err("cross-origin call refused");
        }
    }
    let content_type = text(header::CONTENT_TYPE).unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err("server functions take JSON bodies only");
    }
    Ok(())
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::SERVER_FNS;

    #[test]
    fn every_registered_server_function_has_a_policy() {
        let registered: Vec<&str> = leptos::server_fn::axum::server_fn_paths()
            .map(|(path, _)| path)
            .collect();
        assert!(registered.len() >= 30, "{registered:?}");
        for path in &registered {
            assert!(
                SERVER_FNS.iter().any(|f| f.path == *path),
                "server function {path} has no entry in SERVER_FNS"
            );
        }
        for f in SERVER_FNS {
            assert!(
                registered.contains(&f.path),
                "{} is not a server function",
                f.path
            );
        }
    }
}
