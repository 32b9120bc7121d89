//! Generation in process: the decoder session ([`decoder`]), batched generation with continuous
//! batching ([`generate`]; [`row`]: one sequence's token choice and stops; [`kv`] and [`prefix`]:
//! the KV cache and its reuse of shared prompt prefixes), sampling ([`sample`]; [`contrast`]: context-aware decoding), the requests'
//! settings ([`prompt`]), and teacher-forced scoring ([`score`]).

pub mod contrast;
pub mod decoder;
pub mod generate;
mod kv;
mod prefix;
mod prompt;
mod row;
pub mod sample;
pub mod score;
