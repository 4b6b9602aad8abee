//! Harness of capture-agent's end-to-end tests: the shared pods, traffic and file judges of
//! `podcap-testkit`, plus the capturers under test and of reference ([`capture`]), which need
//! this crate's binary.

#![allow(dead_code)]

pub mod capture;

#[allow(unused_imports)]
pub use capture::{filter_args, json_u64, Capturer, Finished};
#[allow(unused_imports)]
pub use podcap_testkit::*;
