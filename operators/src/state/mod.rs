//! State a stage keeps across checkpoints (the save / load hooks it registers), and the metrics
//! it counts into.

pub mod checkpoint;
pub mod metrics;
