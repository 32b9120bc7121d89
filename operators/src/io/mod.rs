//! Input and output: object-store locations, atomic shards, the rephrase journal, token shards.

pub mod journal;
pub mod sink;
pub mod store;
pub mod tokens;
