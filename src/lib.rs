//! # wrapflow
//!
//! Plan → dataflow → run. [`plan`] parses a plan file, [`session`] turns its SQL into per-worker
//! DataFusion sessions, [`run`] starts the workers and resumes from a checkpoint, [`worker`]
//! builds the timely dataflow from the operators of [`wrapflow_operators`] and feeds it segment
//! by segment ([`follow`] names the segments, [`checkpoint`] commits after each; [`wrap`] adds the
//! rephrase stages), [`mixing`] reports the training mixtures, [`manifest`] records
//! what a run did and [`fidelity`] how faithful the rephrasings are.

pub mod checkpoint;
pub mod cluster;
pub mod context;
pub mod feed;
pub mod fidelity;
pub mod follow;
pub mod generate;
pub mod html;
pub mod manifest;
pub mod merge;
pub mod mixing;
pub mod output;
pub mod plan;
pub mod progress;
pub mod remix;
pub mod report;
pub mod run;
pub mod secrets;
pub mod segment;
pub mod session;
pub mod status;
pub mod worker;
pub mod wrap;

pub use wrapflow_operators as operators;
