//! Integration tests of the hub: one test binary (as ripgrep does), with a
//! module per concern.

#![allow(unreachable_pub)]

mod common;
mod config_errors;
mod golden;
mod ingest;
mod exactly_once;
