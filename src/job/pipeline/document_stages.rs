//! **Document stages** (`STAGE name`, registered over documents): after dedup, before chunking.

use wrapflow_operators::Document;
use wrapflow_operators::stages::registry::Record;

use super::Step;
use crate::plan::Plan;

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    super::named::at(plan, Document::PLACE, true)
}
