//! Commands whose work is not a job: `wrapflow generate`.

pub mod generate;
