//! The SQL side: listing input objects, the DataFusion table factory and its record readers, and
//! the filter functions (UDFs) with the heuristics behind them.

pub mod c4;
pub mod heuristics;
pub mod listing;
pub mod readers;
pub mod source;
pub mod stats;
pub mod udf;
