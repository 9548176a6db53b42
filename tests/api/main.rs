//! Integration tests over HTTP against the real binary.
// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod admin;
mod audit;
mod browser;
mod bulk;
mod concurrency;
mod costs;
mod credentials;
mod credentials_aws;
mod discovery;
mod durability;
mod errors;
mod filters;
mod groups;
mod interop;
mod pagination;
mod patch;
mod rules;
mod rules_cli;
mod smoke;
mod tenancy;
mod users;
