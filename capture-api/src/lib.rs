//! capture-api: podcap's API server — REST routes, token auth, the store, the capture runner
//! that drives the in-process agent in standalone mode, and downloads. The `capture-api`
//! binary wires them together.

pub mod auth;
pub mod captures;
pub mod inspect;
pub mod kube;
pub mod metrics;
pub mod pods;
pub mod problem;
pub mod routes;
pub mod runner;
pub mod schedules;
pub mod server;
pub mod store;
pub mod tickets;
pub mod web;
