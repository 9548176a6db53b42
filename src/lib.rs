//! SCIM 2.0 provisioning service. See ARCHITECTURE.md for the code map.

pub mod app;
pub mod auth;
pub mod http;
pub mod lambda;
pub mod scim;
pub mod secrets;
pub mod service;
pub mod store;
