//! capture-api: podcap's API server. [`server`] builds the router from [`routes`]; every request
//! passes the one access table ([`access`]); what differs between the two modes sits behind
//! [`backend::Backend`] (with [`runs::Runs`] for the capture life cycle) and [`store::Store`],
//! chosen once in `main`: [`standalone`] (SQLite, the in-process [`runner`]) or [`kube`] (the
//! CRDs, node agents, TokenReview and SubjectAccessReview). [`state::AppState`] is what the
//! routes share.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod captures;
pub mod files;
pub mod inspect;
pub mod kube;
pub mod metrics;
pub mod pods;
pub mod problem;
pub mod routes;
pub mod runner;
pub mod runs;
pub mod schedules;
pub mod server;
pub mod standalone;
pub mod state;
pub mod store;
pub mod stream;
pub mod tickets;
pub mod tls;
pub mod web;
