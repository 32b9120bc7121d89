//! The pipeline's stages, each an extension trait on a timely stream: dedup (exact and near),
//! chunk, style fan-out, rephrase, gates and mix. Every stage has the shape
//! `stream.stage(&Config, &StageContext)` ([`context`]).

pub mod chunk;
pub mod context;
#[macro_use]
mod registry;
pub mod dedup;
pub mod fanout;
pub mod gates;
pub mod mix;
pub mod rephrase;
pub mod styles;

pub use registry::{DocumentStage, document_stage};

// The document stages a plan can name with `STAGE name WITH (...)`, run in plan order between
// dedup and chunk: one line each, `module::method(Config)`, for a file of this folder whose
// extension trait has `method(self, &Config, &StageContext)`.
document_stages! {
    clean::clean_whitespace(CleanConfig),
}
