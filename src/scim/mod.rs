//! The SCIM core: schemas, filters, PATCH, projection, pagination and errors.
//!
//! Invariant: nothing here does I/O or knows about axum, Lambda, AWS or the
//! store. The core turns requests into data and data into responses;
//! `crate::service` drives it against a `crate::store::Store`.

pub mod bulk;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod model;
pub mod patch;
pub mod render;
pub mod resource;
pub mod schema;
