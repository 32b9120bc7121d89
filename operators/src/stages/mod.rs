//! The pipeline's stages, each an extension trait on a timely stream: dedup (exact and near),
//! whitespace cleaning, chunk, style fan-out, rephrase, gates, sink and mix. Every stage has the shape
//! `stream.stage(&Config, &StageContext)` ([`context`]).

pub mod chunk;
pub mod context;
#[macro_use]
pub mod registry;
pub mod dedup;
pub mod fanout;
pub mod gates;
pub mod mix;
pub mod rephrase;
pub mod sink;
pub mod styles;

pub use registry::{NamedStage, RegisteredStage, named_stage};

// The stages a plan can name with `STAGE name WITH (...)`: one line each, `module::Config`, for
// a file of this folder whose config implements `registry::NamedStage` (ARCHITECTURE.md has a
// worked example). A job runs them in plan order where their records flow.
stages! {
    clean::CleanConfig,
}
