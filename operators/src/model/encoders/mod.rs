//! Encoder models: the BERT embedder and cross-encoder graphs and their import ([`bert`]); a
//! tiny random cross-encoder for tests ([`tiny_bert`]).

pub mod bert;
#[cfg(any(test, feature = "testkit"))]
pub mod tiny_bert;
