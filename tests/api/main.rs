//! Integration tests over HTTP against the real binary.

mod harness;

mod smoke;
