//! The SCIM core: schemas, filters, PATCH, projection, pagination and errors.
//!
//! Invariant: nothing here does I/O or knows about axum, Lambda or AWS. The
//! core turns requests into data and data into responses; `crate::service`
//! drives it against a `crate::store::Store`.

pub mod error;
pub mod filter;
pub mod schema;
