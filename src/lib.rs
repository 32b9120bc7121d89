//! # wrapflow
//!
//! Plan → dataflow → run. [`plan`] parses a plan file, [`session`] turns its SQL into per-worker
//! DataFusion sessions, [`run`] builds the timely dataflow from the operators of
//! [`wrapflow_operators`] and drives it, [`manifest`] records what a run did.

pub mod generate;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod run;
pub mod session;

pub use wrapflow_operators as operators;
