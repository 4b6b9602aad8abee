//! podcap-e2e has no library code: its test targets (listed in Cargo.toml) are the end-to-end
//! suites, and their shared harness is the `podcap-testkit` crate in `testkit/`.
#![forbid(unsafe_code)]
