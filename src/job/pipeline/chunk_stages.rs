//! **Chunk stages** (`STAGE name`, registered over chunks): after chunking, before the chunks are
//! written and rephrased.

use wrapflow_operators::Chunk;
use wrapflow_operators::stages::registry::Record;

use super::Step;
use crate::plan::Plan;

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    super::named::at(plan, Chunk::PLACE, false)
}
