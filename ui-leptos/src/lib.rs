//! The web console: a Leptos app rendered on the server (`ssr`, served by `nerve serve` and
//! `nerve dev` beside `/api/v1`) and hydrated in the browser (`hydrate`, built to wasm32 by
//! `infra/dev/build-web.sh`). Its data comes from server functions that call the same
//! `nerve_api::fleet` service as the REST API.

pub mod app;
pub mod chart;
pub mod data;
pub mod format;
pub mod live;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;
pub mod session;

/// Base name of the bundle under `/pkg/`: `nerve_ui.js` and `nerve_ui_bg.wasm`.
pub const OUTPUT_NAME: &str = "nerve_ui";

/// Entry point of the wasm module: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[allow(unsafe_code)] // the #[wasm_bindgen] expansion
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
