//! **Dedup** stage: [`Document`]s in, the first document of each `dedup_key` out.
//!
//! Exact and global: keys (not documents) are sent to the worker that owns them, so every copy
//! of a key meets the same set whichever file or worker read it ([`crate::stages::dedup::owners`]). The state is one 128-bit key per distinct document.
//! The copy that survives is the first in input order (the earliest timestamp, which the job
//! derives from object order, then the smallest line), whatever the workers or thread timing.

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::Inspect;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::Document;
use crate::stages::context::StageContext;
use crate::stages::dedup::owners::keep_unseen;
pub use crate::stages::dedup::owners::{KeyHasher, KeySet};

/// A document's dedup key: a 128-bit hash of its `DEDUP ON` value; without one (or a NULL one),
/// a key unique to the record (its file and line), so that it is never a duplicate.
pub fn dedup_key(value: Option<&str>, file: &str, line: u64) -> u128 {
    match value {
        Some(v) => xxhash_rust::xxh3::xxh3_128(v.as_bytes()),
        None => xxhash_rust::xxh3::xxh3_128(format!("\0{file}:{line}").as_bytes()),
    }
}

/// Settings of the dedup stage (`DEDUP ON expr` in a plan).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Expected distinct documents per worker, to size the key set up front.
    pub expected_docs: usize,
}

/// Extension trait: exact dedup of a document stream by `Document::dedup_key`.
pub trait Dedup<'scope, T: Timestamp> {
    /// Keeps the first document of each key. The key set is registered in `ctx.states` (as
    /// `dedup`) for checkpoints, so a job that resumes remembers every document it ever read.
    /// Counts `dedup.out` and `dedup.duplicates`.
    fn dedup(self, config: &DedupConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document>;
}

impl<'scope, T: Timestamp + TotalOrder> Dedup<'scope, T> for StreamVec<'scope, T, Document> {
    fn dedup(self, config: &DedupConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document> {
        // The high half of the key picks the owner, the low half is what it remembers.
        let (kept, dropped) = keep_unseen(self, "Dedup", config.expected_docs, ctx.states.as_ref(), |d: &Document| {
            vec![((d.dedup_key >> 64) as u64, d.dedup_key as u64)]
        });
        let m = ctx.metrics.clone();
        dropped.inspect(move |_| m.add("dedup.duplicates", 1));
        let m = ctx.metrics.clone();
        kept.inspect(move |_| m.add("dedup.out", 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::{Capture, ToStream, capture::Extract};

    fn doc(id: &str, key: u128) -> Document {
        Document { id: id.into(), text: id.into(), source_file: "f".into(), source_line: 1, dedup_key: key }
    }

    #[test]
    fn keeps_first_of_each_key_across_workers() {
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::process(2), move |worker| {
            let idx = worker.index() as u128;
            let send = send.lock().unwrap().clone();
            worker.dataflow::<u64, _, _>(|scope| {
                // Both workers hold a copy of key 7 and 9; worker 1 also has key 8 twice.
                let mut docs = vec![doc("a", 7 << 64), doc("b", 9)];
                if idx == 1 {
                    docs.extend([doc("c", 8), doc("d", 8)]);
                }
                docs.to_stream(scope)
                    .container::<Vec<_>>()
                    .dedup(&DedupConfig::default(), &StageContext::default())
                    .capture_into(send);
            });
        })
        .unwrap();
        let mut keys: Vec<u128> = recv.extract().into_iter().flat_map(|(_, v)| v).map(|d| d.dedup_key).collect();
        keys.sort();
        assert_eq!(keys, vec![8, 9, 7 << 64]);
    }
}
