//! Coffer's end-to-end tests: one binary, so the dependency tree is linked once. Each module
//! is one area (its first lines say which); `common` is the harness they share.
//!
//! Tests that need a server a fresh machine lacks are `#[ignore = "needs …"]`; `.ci/run` runs
//! them with `--include-ignored`. One test: `cargo test --test e2e -- shares::` (a module) or
//! the test's name.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a panic in a test is a failed test, with the message saying what was expected"
)]

#[macro_use]
mod common;

mod accounts;
mod activity;
mod admin_users;
mod audit;
mod authorization;
mod bad_input;
mod browser;
mod bundles;
mod crashes;
mod files;
mod keys;
mod kms;
mod large;
mod mfa;
mod multi_upload;
mod oidc;
mod outages;
mod pipeline;
mod processes;
mod receipts;
mod recipient_downloads;
mod recipient_verification;
mod scale;
mod scan;
mod service;
mod sessions;
mod share_edits;
mod shares;
mod shutdown;
mod tokens;
mod upgrade;
mod webapp;
