//! Dedup: exact ([`exact`]) and near-duplicate ([`near`]), both global across workers. Keys go
//! to the worker that owns them ([`owners`]); near-duplicate clusters are connected components
//! on differential dataflow ([`components`]).

pub mod components;
pub mod exact;
pub mod near;
pub mod owners;
