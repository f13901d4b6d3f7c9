//! duijie (对接): the data-integration hub of a comprehensive administrative
//! law-enforcement bureau.
//!
//! Records flow from external government systems through source connectors
//! (crate `duijie-connectors`), are normalised by declarative mappings
//! ([`mapping`]) into canonical Avro records ([`schema`]) and land on a
//! Kafka bus ([`bus`]); the [`runtime`] owns scheduling, retries,
//! acknowledgement and cursors, once, for every pipeline.

#![forbid(unsafe_code)]

pub mod alert;
pub mod audit;
pub mod bus;
pub mod calendar;
pub mod check;
pub mod config;
pub mod credit;
pub mod delivery;
pub mod desk;
pub mod entity;
pub mod error;
pub mod ident;
pub mod intake;
pub mod keepers;
pub mod lead;
pub mod mapping;
pub mod personal;
pub mod quality;
pub mod retry;
pub mod runtime;
pub mod schema;
pub mod secrets;
pub mod section;
pub mod supervision;
pub mod telemetry;
pub mod text;
pub mod value;
pub mod web;
