//! The pipeline's stages, each an extension trait on a timely stream: dedup (exact and near),
//! chunk, style fan-out, rephrase, gates and mix. Every stage has the shape
//! `stream.stage(&Config, &StageContext)` ([`context`]).

pub mod chunk;
pub mod context;
pub mod dedup;
pub mod fanout;
pub mod gates;
pub mod mix;
pub mod rephrase;
pub mod styles;
