//! What one worker reports at each checkpoint.

use serde::{Deserialize, Serialize};
use wrapflow_operators::state::metrics::MetricSet;
use wrapflow_operators::{MixEvent, ShardInfo};

use crate::report::manifest::Input as InputOut;

/// What one worker did: what it read (from the SQL side), what its stages counted, and the
/// shards its sinks and mixtures wrote.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub read_rows: u64,
    pub read_rejected: u64,
    pub sql_rows: u64,
    /// Rows the plan's filters (`WHERE`) dropped, from DataFusion's metrics: with a `LIMIT`, the
    /// rest of what the SQL did not pass on was cut by the limit.
    #[serde(default)]
    pub where_dropped: u64,
    /// The input query has a `LIMIT`.
    #[serde(default)]
    pub limit: bool,
    /// What the stages counted (see each stage's docs for its names).
    pub metrics: MetricSet,
    pub shards: Vec<ShardInfo>,
    pub reject_shards: Vec<ShardInfo>,
    pub synthetic_shards: Vec<ShardInfo>,
    /// Hash of each REPHRASE's model weights, in plan order (lineage; on a server `endpoint:` and its address).
    #[serde(default)]
    pub weights_hashes: Vec<String>,
    pub inputs: Vec<InputOut>,
    pub mix: Vec<MixEvent>,
}
