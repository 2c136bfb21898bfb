//! Identity: operator tokens ([`token`]: format, hashing), every instance's in-memory fold of
//! them ([`keyring`], with enrollments and enrolled nodes in [`nodes`]), the service that
//! issues, lists, rotates and revokes tokens ([`tokens`]), and nodes' enrollment and NATS
//! credentials ([`enroll`]). Who may call which route is the router's policy
//! (`crate::http::ROUTES`); the guard that enforces it is `crate::http::guard`.

pub mod enroll;
pub mod keyring;
pub mod nodes;
pub mod token;
pub mod tokens;
