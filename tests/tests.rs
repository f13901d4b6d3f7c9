//! Integration tests of the hub: one test binary (as ripgrep does), with a
//! module per concern.

#![allow(unreachable_pub)]

mod auth;
mod backfill;
mod brokers;
mod cli;
mod common;
mod config_errors;
mod desk;
mod entities;
mod errors;
mod exactly_once;
mod golden;
mod governance;
mod http_poll;
mod ingest;
mod layers;
mod ops;
mod push;
mod reload;
mod scale_out;
mod sealing;
mod security;
mod systems;
mod traces;
mod video;
