//! Operator identity: tokens ([`token`]: format, hashing), every instance's in-memory fold of
//! them ([`keyring`]), and the service that issues, lists, rotates and revokes them
//! ([`tokens`]). Who may call which route is the router's policy (`crate::http::ROUTES`); the
//! guard that enforces it is `crate::http::guard`.

pub mod keyring;
pub mod token;
pub mod tokens;
