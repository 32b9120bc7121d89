//! **Dedup** stage: [`Document`]s in, the first document of each `dedup_key` out.
//!
//! Exact and global: documents are exchanged by key, so every copy of a key meets the same
//! worker whichever file or worker read it. The state is one 128-bit key per distinct document.
//! Which copy survives follows arrival order; the set of surviving texts does not depend on it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;

use crate::record::Document;

/// Settings of the dedup stage (`DEDUP ON expr` in a plan).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Expected distinct documents per worker, to size the key set up front.
    pub expected_docs: usize,
}

/// Keys are already uniform hashes: use their low bits instead of hashing them again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A set of 64-bit keys hashed by their own bits.
pub type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// Extension trait: exact dedup of a document stream by `Document::dedup_key`.
pub trait Dedup<'scope, T: Timestamp> {
    fn dedup(self, config: &DedupConfig) -> StreamVec<'scope, T, Document>;
}

impl<'scope, T: Timestamp> Dedup<'scope, T> for StreamVec<'scope, T, Document> {
    fn dedup(self, config: &DedupConfig) -> StreamVec<'scope, T, Document> {
        let mut seen = KeySet::with_capacity_and_hasher(config.expected_docs, Default::default());
        // The exchange uses the high half so that a worker's set still sees spread-out low bits.
        self.unary(Exchange::new(|d: &Document| (d.dedup_key >> 64) as u64), "Dedup", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        session.give_iterator(batch.drain(..).filter(|d| seen.insert(d.dedup_key as u64)));
                    }
                });
            }
        })
        .container::<Vec<Document>>()
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
                docs.to_stream(scope).container::<Vec<_>>().dedup(&DedupConfig::default()).capture_into(send);
            });
        })
        .unwrap();
        let mut keys: Vec<u128> = recv.extract().into_iter().flat_map(|(_, v)| v).map(|d| d.dedup_key).collect();
        keys.sort();
        assert_eq!(keys, vec![8, 9, 7 << 64]);
    }
}
