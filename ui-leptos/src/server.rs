//! Serving the console: server-rendered routes and server functions (with the API's state as
//! context; all behind `crate::session::guard`), the wasm bundle under `/pkg` (revalidated on every load: `Cache-Control: no-cache`
//! with `Last-Modified`, so a new build is never shadowed by a stale one), and the favicon.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::{App, shell};

/// Everything `nerve serve` answers: `/api/v1`, `/metrics` and the console, gzip-compressed
/// when the client accepts it.
pub fn app(state: nerve_api::AppState, site_dir: &Path) -> Router {
    nerve_api::router(state.clone())
        .merge(router(state, site_dir))
        .layer(tower_http::compression::CompressionLayer::new())
}

/// The console's router. `site_dir` holds `pkg/nerve_ui.js` and `pkg/nerve_ui_bg.wasm` from
/// `infra/dev/build-web.sh`;
/// without them pages still render on the server but are not interactive.
pub fn router(state: nerve_api::AppState, site_dir: &Path) -> Router {
    let options = LeptosOptions::builder()
        .output_name(crate::OUTPUT_NAME)
        .site_root(site_dir.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .build();
    let pkg_dir = site_dir.join("pkg");
    if !pkg_dir
        .join(format!("{}_bg.wasm", crate::OUTPUT_NAME))
        .exists()
    {
        tracing::warn!(
            dir = %pkg_dir.display(),
            "console wasm bundle missing (run infra/dev/build-web.sh): pages will not hydrate"
        );
    }
    let routes = generate_route_list(App);
    let guarded = axum::middleware::from_fn_with_state(state.clone(), crate::session::guard);
    let context = move || provide_context(state.clone());
    let pkg = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .service(ServeDir::new(pkg_dir));
    Router::new()
        .leptos_routes_with_context(&options, routes, context.clone(), {
            let options = options.clone();
            move || shell(options.clone())
        })
        .nest_service("/pkg", pkg)
        .route("/favicon.ico", get(favicon))
        .fallback(leptos_axum::file_and_error_handler_with_context(
            context, shell,
        ))
        .layer(guarded)
        .with_state(options)
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
}

const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b57d0"/><path d="M3 9h2l2-5 2 8 2-3h2" fill="none" stroke="#fff" stroke-width="1.5"/></svg>"##;
