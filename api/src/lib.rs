//! The REST API `/api/v1`: its contract ([`dto`], one module per domain; always builds, also for
//! wasm, so the console shares it) and, with the default `server` feature, the server.
//!
//! The server's layers, each module importing only the ones below it:
//! - [`http`] — the edge: the router, its handlers, extractors whose rejections are JSON, and the
//!   mapping of [`error::ApiError`] to a status and code.
//! - Services, called by the handlers and by the console's server functions alike: [`fleet`]
//!   (node list, metrics, summary, health), [`resources`] (the CNET agent's view: this server,
//!   the fleet's capacity and use), [`node`] (node detail), both now or at a past time
//!   over [`at`] (the fleet as it was, folded from the history tables), [`tasks`], [`clusters`] and [`alerts`]
//!   (the reads the API shows; changes are handed to `nerve-alerts`).
//! - [`snapshot`] (every node's list row in memory) over [`tags`] (each node's clusters and
//!   labels), and [`time`] (the API's time formats).
//! - [`auth`] (tokens and every instance's fold of them) and [`audit`] (the trail of every
//!   change and refused call, written before the change).
//! - [`AppState`]: what every handler can reach.

pub mod dto;

#[cfg(feature = "server")]
pub mod alerts;
#[cfg(feature = "server")]
pub mod at;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod clusters;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod fleet;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod maintenance;
#[cfg(feature = "server")]
pub mod node;
#[cfg(feature = "server")]
pub mod remediation;
#[cfg(feature = "server")]
pub mod resources;
#[cfg(feature = "server")]
pub mod snapshot;
#[cfg(feature = "server")]
mod state;
#[cfg(feature = "server")]
pub mod tags;
#[cfg(feature = "server")]
pub mod tasks;
#[cfg(feature = "server")]
pub mod time;

#[cfg(feature = "server")]
pub use http::{router, serve, serve_tls};
#[cfg(feature = "server")]
pub use state::AppState;
