//! State a stage keeps across checkpoints: the save / load hooks it registers.

pub mod checkpoint;
