//! SCIM 2.0 provisioning service. See ARCHITECTURE.md for the code map.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod cli;
pub mod credentials;
pub mod http;
pub mod lambda;
pub mod mail;
pub mod publisher;
pub mod rules;
pub mod scim;
pub mod secrets;
pub mod service;
pub mod store;
