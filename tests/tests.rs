//! Integration tests of the hub: one test binary (as ripgrep does), with a
//! module per concern.

mod common;
mod config_errors;
mod golden;
