//! Global "seen before?" decisions by key, with documents staying where they are: the shared core
//! of exact and near-duplicate dedup.
//!
//! Each document yields some `(route, key)` pairs. Only the key (with the document's hash and its
//! home worker) travels, to the worker that `route` picks; that owner keeps the set of keys seen
//! so far. Once a timestamp is complete the owner takes its keys in order of document hash, and
//! answers for each whether an earlier document had it; the answers go back to the document's
//! home worker, which keeps the document if no key was seen. "Earlier" is therefore input time,
//! then position in the input ([`doc_hash`]): the same documents survive whatever the thread
//! timing, and only ~32 bytes per key cross the network instead of whole documents.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;
use xxhash_rust::xxh3::Xxh3;

use crate::record::Document;
use crate::state::checkpoint::{Saved, StateRegistry, Stateful, decode, encode};

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

/// An owner's keys, saved as deltas: a checkpoint writes the keys added since the last one
/// (8 bytes each before compression), not the whole set.
#[derive(Default)]
pub struct KeyState {
    pub seen: KeySet,
    added: Vec<u64>,
}

impl KeyState {
    /// Adds a key; `false` if it was there.
    pub fn insert(&mut self, key: u64) -> bool {
        let new = self.seen.insert(key);
        if new {
            self.added.push(key);
        }
        new
    }
}

impl Stateful for KeyState {
    fn save(&mut self, full: bool) -> anyhow::Result<Saved> {
        let keys: Vec<u64> = if full { self.seen.iter().copied().collect() } else { self.added.clone() };
        self.added.clear();
        // Raw little-endian keys: they are uniform hashes, so bincode framing would only add bytes.
        let raw: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        Ok(Saved { full, bytes: encode(&raw)? })
    }

    fn load(&mut self, part: &[u8]) -> anyhow::Result<()> {
        let raw: Vec<u8> = decode(part)?;
        anyhow::ensure!(raw.len().is_multiple_of(8), "a key part of {} bytes is not a list of 64-bit keys", raw.len());
        self.seen.extend(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
        Ok(())
    }
}

/// Bits of [`doc_hash`] below its line number.
const LINE_SHIFT: u32 = 36;

/// A document's identity for ordering and for matching answers: its line in its file in the high
/// bits, then a hash of its id, file and line. Documents of one timestamp come from one input
/// object (the job gives each object its own times, in input order), so ordering by this value is
/// ordering by input position: the first occurrence wins whatever the workers or segments.
pub fn doc_hash(d: &Document) -> u64 {
    let mut h = Xxh3::with_seed(0x6e64);
    for part in [d.id.as_bytes(), b"\0", d.source_file.as_bytes(), b"\0", &d.source_line.to_le_bytes()] {
        h.update(part);
    }
    let line = d.source_line.min((1 << (64 - LINE_SHIFT)) - 1);
    (line << LINE_SHIFT) | (h.digest() & ((1 << LINE_SHIFT) - 1))
}

/// A key on its way to its owner: (route, key, document hash, home worker).
type KeyMsg = (u64, u64, u64, u64);
/// The owner's answer: (home worker, document hash, seen before).
type Answer = (u64, u64, bool);

/// Splits `docs` into those none of whose keys an earlier document had, and one `()` per other.
/// With `states`, the owner's key set is registered there (as `name`) for checkpoints.
pub fn keep_unseen<'scope, T, K>(
    docs: StreamVec<'scope, T, Document>,
    name: &str,
    expected_keys: usize,
    states: Option<&StateRegistry>,
    keys: K,
) -> (StreamVec<'scope, T, Document>, StreamVec<'scope, T, ()>)
where
    T: Timestamp + TotalOrder,
    K: Fn(&Document) -> Vec<(u64, u64)> + 'static,
{
    let worker = docs.scope().index() as u64;
    // 1. At home: each document's keys go to their owners; the document waits (step 3).
    let msgs = docs
        .clone()
        .unary(Pipeline, &format!("{name}Keys"), move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let mut session = output.session(&cap);
                    for d in data.flat_map(|b| b.iter()) {
                        let h = doc_hash(d);
                        for (route, key) in keys(d) {
                            session.give((route, key, h, worker));
                        }
                    }
                });
            }
        })
        .container::<Vec<KeyMsg>>();
    // 2. Owners: per complete timestamp, in document-hash order, a key already in the set was
    // seen before.
    let state = Rc::new(RefCell::new(KeyState {
        seen: KeySet::with_capacity_and_hasher(expected_keys, Default::default()),
        added: Vec::new(),
    }));
    if let Some(r) = states {
        r.register(&name.to_lowercase(), state.clone());
    }
    let mut stash: BTreeMap<T, Vec<KeyMsg>> = BTreeMap::new();
    let answers = msgs
        .unary_frontier(Exchange::new(|m: &KeyMsg| m.0), &format!("{name}Owner"), move |_, _| {
            let mut caps = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    caps.entry(cap.time().clone()).or_insert_with(|| cap.clone());
                    let e = stash.entry(cap.time().clone()).or_default();
                    data.for_each(|b| e.append(b));
                });
                let ready: Vec<T> = stash.keys().filter(|t| !frontier.less_equal(t)).cloned().collect();
                for t in ready {
                    let mut msgs = stash.remove(&t).unwrap_or_default();
                    msgs.sort_unstable_by_key(|m| (m.2, m.1));
                    let cap = caps.remove(&t).expect("a capability per stashed time");
                    let mut session = output.session(&cap);
                    let mut state = state.borrow_mut();
                    for (_, key, doc, home) in msgs {
                        session.give((home, doc, !state.insert(key)));
                    }
                }
            }
        })
        .container::<Vec<Answer>>();
    // 3. Home: a document is kept when none of its keys was seen before.
    decide_at_home(
        docs,
        answers,
        |a: &Answer| a.0,
        &format!("{name}Verdict"),
        |(_, doc, seen), cap_time: &T| (cap_time.clone(), doc, seen),
        |seen: &[bool]| !seen.iter().any(|s| *s),
    )
}

/// The home side of a global decision: each document waits until every answer for its time has
/// arrived (both inputs have passed the time), then is kept or counted as dropped.
///
/// `entry` turns an answer (and the time of its container) into the time it describes, the hash
/// of the document it is about and a value; `keep` decides from the values for one document
/// (empty when none came). Answers for documents that are not waiting are dropped.
pub fn decide_at_home<'scope, T, A, V>(
    docs: StreamVec<'scope, T, Document>,
    answers: StreamVec<'scope, T, A>,
    route: impl Fn(&A) -> u64 + 'static,
    name: &str,
    entry: impl Fn(A, &T) -> (T, u64, V) + 'static,
    keep: impl Fn(&[V]) -> bool + 'static,
) -> (StreamVec<'scope, T, Document>, StreamVec<'scope, T, ()>)
where
    T: Timestamp + TotalOrder,
    A: timely::ExchangeData,
    V: 'static,
{
    let mut answered: BTreeMap<T, HashMap<u64, Vec<V>>> = BTreeMap::new();
    let mut waiting: BTreeMap<T, Vec<Document>> = BTreeMap::new();
    docs.binary_frontier(answers, Pipeline, Exchange::new(route), name, move |_, _| {
        let mut caps = BTreeMap::new();
        move |(docs_in, f1), (answers_in, f2), output| {
            docs_in.for_each_stamp(|cap, data| {
                let Some(cap) = cap.retain_least(output.output_index()) else { return };
                caps.entry(cap.time().clone()).or_insert_with(|| cap.clone());
                data.for_each(|b| waiting.entry(cap.time().clone()).or_default().append(b));
            });
            answers_in.for_each_stamp(|cap, data| {
                // An empty stamp carries no answers.
                let Some(stamp) = cap.least().cloned() else { return };
                for a in data.flat_map(|b| b.drain(..)) {
                    let (time, doc, value) = entry(a, &stamp);
                    answered.entry(time).or_default().entry(doc).or_default().push(value);
                }
            });
            let complete = |t: &T| !f1.less_equal(t) && !f2.less_equal(t);
            let ready: Vec<T> = waiting.keys().filter(|t| complete(t)).cloned().collect();
            for t in ready {
                let answers = answered.remove(&t).unwrap_or_default();
                let cap = caps.remove(&t).expect("a capability per waiting time");
                let mut session = output.session(&cap);
                for d in waiting.remove(&t).unwrap_or_default() {
                    let kept = keep(answers.get(&doc_hash(&d)).map_or(&[], Vec::as_slice));
                    session.give(if kept { Ok(d) } else { Err(()) });
                }
            }
            answered.retain(|t, _| !complete(t));
        }
    })
    .container::<Vec<Result<Document, ()>>>()
    .ok_err(|r| r)
}
