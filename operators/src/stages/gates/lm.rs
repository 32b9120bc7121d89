//! The `lm` gate: a language model reads each claim (sentence) of a kept row with its source
//! before it and without ([`lm_grounding`]); a claim fails when more than
//! `max_unsupported_share` of its tokens stay unlikely even after the source (log-probability
//! below −6) and the source makes them no likelier. Measured blind on the yardstick before it
//! became a gate (`benchmarks/RESULTS.md`: precision 0.90, recall 0.44–0.47 on the held-out
//! parts at share 0); off unless `GATES WITH (grounding_model = '...')` names a model.

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::Decoder;
use crate::engine::decode::score::{ClaimScore, lm_grounding};

/// The worker's language model for the `lm` gate.
pub type SharedReader = Rc<RefCell<Decoder>>;

/// The claims of `text` as `reader` reads them against `source`, and the reason the row fails
/// the gate (the first claim over `max_share`), if it does.
pub fn lm_gate(
    reader: &SharedReader,
    source: &str,
    text: &str,
    max_share: f64,
) -> anyhow::Result<(Vec<ClaimScore>, Option<String>)> {
    let claims = lm_grounding(&mut reader.borrow_mut(), source, text)?;
    let failed = claims.iter().find(|c| c.unsupported_share as f64 > max_share).map(|c| {
        format!(
            "lm grounding: {:.0}% of the tokens of \"{}\" are unlikely with the source and not made likelier by it",
            100.0 * c.unsupported_share,
            c.claim
        )
    });
    Ok((claims, failed))
}
