//! SCIM 2.0 provisioning service. See ARCHITECTURE.md for the code map.

pub mod scim;
pub mod store;
