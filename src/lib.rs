//! # wrapflow
//!
//! Plan → job → report. [`plan`] parses a plan file (parameters, secrets, stages); [`job`] takes
//! the output, turns the plan's SQL into per-worker DataFusion sessions and its stages into a
//! timely dataflow built from the operators of [`wrapflow_operators`], and runs it segment by
//! segment with a checkpoint after each; [`report`] merges what the workers did into
//! `manifest.json` and shows it (text, `report.html`, `wrapflow status`); [`cli`] holds the
//! commands that are not jobs; [`metrics`] exposes a job's or the server's counts to Prometheus.
//! `src/main.rs` is the command line over these.

pub mod cli;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod serve;

pub use wrapflow_operators as operators;
