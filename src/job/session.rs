//! DataFusion sessions for a plan: one per worker, each reading its share of the inputs.

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokenizers::Tokenizer;
use wrapflow_operators::io::store::StoreRegistry;
use wrapflow_operators::sql::source::SourceFactory;
use wrapflow_operators::sql::udf;

use crate::plan::{Plan, PlanError};

/// A worker's session and the factory that knows its sources.
pub struct WorkerSession {
    pub ctx: SessionContext,
    pub factory: Arc<SourceFactory>,
}

/// Runs the plan's DataFusion statements in a fresh session for worker `worker` of `peers`.
/// Creating tables does no I/O: files are listed when the query runs.
pub async fn build(
    plan: &Plan,
    registry: Arc<StoreRegistry>,
    tokenizer: Option<Arc<Tokenizer>>,
    worker: usize,
    peers: usize,
) -> Result<WorkerSession, PlanError> {
    // One partition per worker: the dataflow provides the parallelism. A batch is the unit of
    // backpressure (see `feed::InFlight`): small when every document costs model time.
    let batch = if !plan.rephrase.is_empty() { 32 } else { 1024 };
    let config = SessionConfig::new().with_target_partitions(1).with_batch_size(batch);
    // No limit pushed into filters: a filter that stops at its fetch cannot tell rows its
    // predicate dropped from rows the limit cut, and the manifest counts those apart.
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let rules = state.physical_optimizers().iter().filter(|r| r.name() != "LimitPushdown").cloned().collect();
    let state = SessionStateBuilder::new_from_existing(state).with_physical_optimizer_rules(rules).build();
    let ctx = SessionContext::new_with_state(state);
    udf::register_all(&ctx, tokenizer);
    let factory = SourceFactory::new(registry, worker, peers);
    factory.register(&ctx);
    for stmt in &plan.sql {
        ctx.sql(&stmt.sub.text).await.map_err(|e| plan.sql_error(stmt, e))?;
    }
    Ok(WorkerSession { ctx, factory })
}

/// The query that feeds the dataflow.
pub async fn input(plan: &Plan, ws: &WorkerSession) -> Result<DataFrame, PlanError> {
    ws.ctx.sql(&plan.input_query()).await.map_err(|e| plan.error_at(plan.input.1, format!("input: {e}")))
}
