//! The REST API, `/api/v1`: `fn router(state) -> Router`, served by `nerve serve` and `nerve dev`
//! together with the console. Reads go through [`fleet`], the one service layer over ClickHouse
//! that both the REST handlers and the console's server functions use.
//!
//! [`dto`] (the API's request/response contract) always builds, also for wasm; everything else
//! needs the default `server` feature.

pub mod dto;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub use server::*;
