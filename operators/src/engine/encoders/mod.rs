//! Encoder models the gates read with: the sentence embedder ([`embed`]) and the cross-encoder
//! that scores whether a chunk entails a claim ([`entail`]).

pub mod embed;
pub mod entail;
