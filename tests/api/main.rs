//! Integration tests over HTTP against the real binary.

mod harness;

mod concurrency;
mod discovery;
mod durability;
mod errors;
mod filters;
mod groups;
mod pagination;
mod patch;
mod smoke;
mod tenancy;
mod users;
