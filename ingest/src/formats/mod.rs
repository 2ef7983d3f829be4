//! Input formats: one module per format.

pub mod calico;
pub mod canonical;
pub mod detect;
pub(crate) mod fields;
pub mod hubble;
pub(crate) mod json;
pub mod netobserv;
