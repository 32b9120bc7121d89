//! Near-duplicate **clusters**, found incrementally on differential dataflow: documents in, the
//! first document of each cluster out (plus one `()` per other document, to count).
//!
//! The documents and their MinHash band keys form a bipartite graph (a document is linked to each
//! of its bands); a cluster is a connected component of it, so documents that never share a band
//! directly are still one cluster when a chain of near duplicates joins them. Differential
//! dataflow's label propagation keeps, for every document, the smallest label in its component,
//! where a document's label is `(input time, document hash)`. As input arrives the components are
//! updated incrementally; a document that arrives at time `t` is kept when it is the first of its
//! cluster as the cluster stands at `t`, i.e. its own label is the component's minimum.
//!
//! What is written cannot be taken back: when a later document bridges two clusters whose first
//! documents were both kept, both stay (the merged cluster then has two kept documents); every
//! document after the bridge joins the merged cluster and is dropped.
//!
//! Documents stay on the worker that read them: only `(node, label)` updates and edges travel,
//! and the verdict comes back to the document's home worker. For checkpoints each home worker
//! keeps what it fed into the graph (document hash, label time, band keys); a resumed job feeds
//! that back at its first timestamp and the components are rebuilt before any new input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use differential_dataflow::algorithms::graphs::propagate::propagate;
use differential_dataflow::lattice::Lattice;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::Document;
use crate::stages::dedup::owners::{decide_at_home, doc_hash};
use crate::state::checkpoint::{Saved, StateRegistry, Stateful, decode, encode};

/// A graph node: `(document hash, home worker)` for a document, `(band key, BAND)` for a band.
type Node = (u64, u64);
const BAND: u64 = u64::MAX;

/// What a home worker fed into the graph for one document.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Fed<T> {
    hash: u64,
    time: T,
    bands: Vec<u64>,
}

/// A home worker's documents, saved as deltas (the documents fed since the last save).
pub struct ClusterState<T> {
    fed: Vec<Fed<T>>,
    saved: usize,
    /// Loaded from a checkpoint, to feed again at the first timestamp.
    replay: Vec<Fed<T>>,
}

impl<T> Default for ClusterState<T> {
    fn default() -> Self {
        ClusterState { fed: Vec::new(), saved: 0, replay: Vec::new() }
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Stateful for ClusterState<T> {
    fn save(&mut self, full: bool) -> anyhow::Result<Saved> {
        let from = if full { 0 } else { self.saved };
        self.saved = self.fed.len();
        Ok(Saved { full, bytes: encode(&&self.fed[from..])? })
    }

    fn load(&mut self, part: &[u8]) -> anyhow::Result<()> {
        let fed: Vec<Fed<T>> = decode(part)?;
        self.replay.extend(fed.iter().cloned());
        self.fed.extend(fed);
        self.saved = self.fed.len();
        Ok(())
    }
}

/// A label update on its way home: `((node, (label time, label hash)), time, diff)`.
type LabelUpdate<T> = ((Node, (T, u64)), T, isize);

/// Splits `docs` into the first document of each near-duplicate cluster and one `()` per other.
/// `bands` gives a document's band keys. With `states`, the fed documents are registered there
/// (as `neardup`) for checkpoints.
pub fn keep_first_of_cluster<'scope, T, B>(
    docs: StreamVec<'scope, T, Document>,
    states: Option<&StateRegistry>,
    bands: B,
) -> (StreamVec<'scope, T, Document>, StreamVec<'scope, T, ()>)
where
    T: Timestamp + TotalOrder + Lattice + Hash + Serialize + DeserializeOwned,
    B: Fn(&Document) -> Vec<u64> + 'static,
{
    let worker = docs.scope().index() as u64;
    let state = Rc::new(RefCell::new(ClusterState::<T>::default()));
    if let Some(r) = states {
        r.register("neardup", state.clone());
    }
    // 1. At home: each document becomes a node with its own label and edges to its bands.
    let fed = docs
        .clone()
        .unary(Pipeline, "NearDupFeed", move |initial, _| {
            // Held until the first activation, to feed a checkpoint's documents back.
            let mut initial = Some(initial);
            move |input, output| {
                if let Some(cap) = initial.take() {
                    let replay = std::mem::take(&mut state.borrow_mut().replay);
                    let mut session = output.session(&cap);
                    for f in replay {
                        session.give(((f.hash, worker, f.time, f.bands), cap.time().clone(), 1isize));
                    }
                }
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let t = cap.time().clone();
                    let mut session = output.session(&cap);
                    let mut state = state.borrow_mut();
                    for d in data.flat_map(|b| b.iter()) {
                        let f = Fed { hash: doc_hash(d), time: t.clone(), bands: bands(d) };
                        session.give(((f.hash, worker, t.clone(), f.bands.clone()), t.clone(), 1isize));
                        state.fed.push(f);
                    }
                });
            }
        })
        .as_collection();
    // 2. Anywhere: the smallest label of each component, kept up to date as documents arrive.
    let nodes = fed.clone().map(|(hash, home, time, _)| ((hash, home), (time, hash)));
    let edges = fed.flat_map(|(hash, home, _, bands)| {
        bands.into_iter().flat_map(move |b| [((hash, home), (b, BAND)), ((b, BAND), (hash, home))])
    });
    let labels = propagate(edges, nodes).filter(|(node, _)| node.1 != BAND).inner;
    // 3. Home: a document that arrived at `t` is kept if its label at `t` is its own. An
    // update's own time, not its container's, is the time it describes; updates for documents
    // that arrived earlier (relabels after a merge) are not needed.
    decide_at_home(
        docs,
        labels,
        |u: &LabelUpdate<T>| ((u.0).0).1,
        "NearDupVerdict",
        |(((hash, _), (_, label)), time, diff): LabelUpdate<T>, _: &T| (time, hash, (hash, label, diff)),
        own_label,
    )
}

/// Whether the label a document holds after `updates` (`(document, label, diff)`, all at its
/// arrival time) is its own hash.
fn own_label(updates: &[(u64, u64, isize)]) -> bool {
    // No update (which differential does not produce for a new node) keeps the document.
    let Some(&(hash, ..)) = updates.first() else { return true };
    let mut net: HashMap<u64, isize> = HashMap::new();
    for &(_, label, diff) in updates {
        *net.entry(label).or_default() += diff;
    }
    let held: Vec<u64> = net.into_iter().filter(|(_, n)| *n > 0).map(|(l, _)| l).collect();
    debug_assert!(held.len() == 1, "one label per node, got {held:?}");
    held.first().is_none_or(|&l| l == hash)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use timely::dataflow::operators::{Input, Inspect, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    use super::*;

    /// `(time, worker, id, bands)`: a document's bands are spelled out in its text.
    type Arrival = (u64, usize, &'static str, &'static str);

    fn doc(id: &str, bands: &str) -> Document {
        Document { id: id.into(), text: bands.into(), source_file: "f".into(), source_line: 1, dedup_key: 0 }
    }

    fn bands(d: &Document) -> Vec<u64> {
        d.text.split(' ').map(|b| b.parse().expect("band numbers")).collect()
    }

    /// Runs the arrivals on `workers` workers (after loading `load`, one saved part per worker)
    /// and returns the kept ids, the number dropped and each worker's full saved state.
    fn run(workers: usize, arrivals: Vec<Arrival>, load: Vec<Vec<u8>>) -> (BTreeSet<String>, usize, Vec<Vec<u8>>) {
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
            let (kept, dropped) = (Rc::new(RefCell::new(Vec::new())), Rc::new(RefCell::new(0)));
            let registry = StateRegistry::default();
            let mut input = InputHandle::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                let docs = scope.input_from(&mut input).container::<Vec<Document>>();
                let (k, d) = keep_first_of_cluster(docs, Some(&registry), bands);
                let (kc, dc) = (kept.clone(), dropped.clone());
                k.inspect(move |d: &Document| kc.borrow_mut().push(d.id.clone())).probe_with(&probe);
                d.inspect(move |_| *dc.borrow_mut() += 1).probe_with(&probe);
            });
            if let Some(part) = load.get(index) {
                registry.entries()[0].1.borrow_mut().load(part).unwrap();
            }
            let times: BTreeSet<u64> = arrivals.iter().map(|a| a.0).collect();
            for t in times {
                input.advance_to(t);
                for (_, _, id, b) in arrivals.iter().filter(|a| a.0 == t && a.1 % worker.peers() == index) {
                    input.send(doc(id, b));
                }
                input.advance_to(t + 1);
                while probe.less_than(&(t + 1)) {
                    worker.step();
                }
            }
            let saved = registry.entries()[0].1.borrow_mut().save(true).unwrap().bytes;
            (kept.borrow().clone(), *dropped.borrow(), saved)
        })
        .unwrap();
        let (mut kept, mut dropped, mut saved) = (BTreeSet::new(), 0, Vec::new());
        for r in guards.join() {
            let (k, d, s) = r.unwrap();
            kept.extend(k);
            dropped += d;
            saved.push(s);
        }
        (kept, dropped, saved)
    }

    fn ids(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_chain_through_documents_of_one_batch_is_one_cluster() {
        // X shares band 1 with A; Y shares only band 2 with X, and Z only band 3 with Y.
        let arrivals =
            vec![(0, 0, "A", "1"), (1, 0, "X", "1 2"), (1, 1, "Y", "2 3"), (2, 1, "Z", "3"), (2, 0, "U", "9 10")];
        for workers in [1, 2] {
            let (kept, dropped, _) = run(workers, arrivals.clone(), vec![]);
            assert_eq!(kept, ids(&["A", "U"]), "{workers} workers");
            assert_eq!(dropped, 3);
        }
    }

    #[test]
    fn a_bridge_keeps_both_first_documents_and_drops_what_follows() {
        let arrivals =
            vec![(0, 0, "A", "1"), (0, 1, "B", "2"), (1, 0, "bridge", "1 2"), (2, 1, "W", "2"), (2, 0, "V", "1")];
        let (kept, dropped, _) = run(2, arrivals, vec![]);
        assert_eq!(kept, ids(&["A", "B"]));
        assert_eq!(dropped, 3);
    }

    #[test]
    fn in_one_batch_the_smallest_document_hash_wins() {
        let (p, q) = (doc("P", "5"), doc("Q", "5"));
        let first = if doc_hash(&p) < doc_hash(&q) { "P" } else { "Q" };
        for workers in [1, 2] {
            let (kept, dropped, _) = run(workers, vec![(0, 0, "P", "5"), (0, 1, "Q", "5")], vec![]);
            assert_eq!(kept, ids(&[first]));
            assert_eq!(dropped, 1);
        }
    }

    #[test]
    fn clusters_survive_a_checkpoint() {
        let before = vec![(0, 0, "A", "1"), (1, 1, "X", "1 2"), (1, 0, "B", "7")];
        let (kept, dropped, saved) = run(2, before, vec![]);
        assert_eq!((kept, dropped), (ids(&["A", "B"]), 1));
        // After the restart: R reaches A only through X, which was dropped before the checkpoint.
        let after = vec![(5, 0, "R", "2"), (5, 1, "N", "77"), (6, 0, "S", "7 77")];
        let (kept, dropped, _) = run(2, after.clone(), saved);
        assert_eq!((kept, dropped), (ids(&["N"]), 2));
        // Without the state, R and S would have been kept (S's cluster {N, S} starts with N).
        let (kept, _, _) = run(2, after, vec![]);
        assert_eq!(kept, ids(&["R", "N"]));
    }
}
