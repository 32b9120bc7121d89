//! Cost of near-duplicate dedup's state, per document, for both methods: `band` (the set of band
//! keys, `keyvote`) and `cluster` (connected components on differential dataflow).
//!
//! `cargo run --example bench_neardup_state -- 14 100 400` feeds that many thousand distinct
//! documents with 14 bands each through one worker, in batches of 10,000 (one timestamp each),
//! and prints documents per second, the resident memory added per document and the bytes per
//! document of a full checkpoint. The band keys are drawn at random (distinct documents share
//! none: the graph's worst case), so MinHash itself is not timed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use wrapflow_operators::record::Document;
use wrapflow_operators::stages::dedup::components::keep_first_of_cluster;
use wrapflow_operators::stages::dedup::owners::keep_unseen;
use wrapflow_operators::state::checkpoint::StateRegistry;
use xxhash_rust::xxh3::xxh3_64_with_seed;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

const BATCH: u64 = 10_000;

fn measure(method: &str, bands: usize, docs: u64) {
    let method = method.to_string();
    timely::execute_directly(move |worker| {
        let before = rss_bytes();
        let registry = StateRegistry::default();
        let mut input = InputHandle::new();
        let probe = ProbeHandle::new();
        let kept = Rc::new(RefCell::new(0u64));
        let band_keys = move |d: &Document| -> Vec<u64> {
            (0..bands as u64).map(|b| xxh3_64_with_seed(d.id.as_bytes(), b)).collect()
        };
        worker.dataflow::<u64, _, _>(|scope| {
            let docs = scope.input_from(&mut input).container::<Vec<Document>>();
            let (k, _) = if method == "cluster" {
                keep_first_of_cluster(docs, Some(&registry), band_keys)
            } else {
                keep_unseen(docs, "NearDup", 0, Some(&registry), move |d| {
                    band_keys(d).into_iter().map(|b| (b, b)).collect()
                })
            };
            let kc = kept.clone();
            k.inspect(move |_| *kc.borrow_mut() += 1).probe_with(&probe);
        });
        let t = Instant::now();
        for batch in 0..docs.div_ceil(BATCH) {
            for i in batch * BATCH..((batch + 1) * BATCH).min(docs) {
                let id = format!("doc-{i}");
                input.send(Document { id, text: String::new(), source_file: "f".into(), source_line: i, dedup_key: 0 });
            }
            input.advance_to(batch + 1);
            while probe.less_than(&(batch + 1)) {
                worker.step();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let used = rss_bytes().saturating_sub(before);
        let saved = registry.entries()[0].1.borrow_mut().save(true).expect("save").bytes.len();
        assert_eq!(*kept.borrow(), docs, "distinct documents are all kept");
        println!(
            "{:>8} {:>6} {:>9} {:>10.0} {:>12.0} {:>14.1}",
            method,
            bands,
            docs,
            docs as f64 / secs,
            used as f64 / docs as f64,
            saved as f64 / docs as f64
        );
    });
}

fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let bands = args.next().unwrap_or(14) as usize;
    let sizes: Vec<u64> = args.collect();
    let sizes = if sizes.is_empty() { vec![100] } else { sizes };
    println!(
        "{:>8} {:>6} {:>9} {:>10} {:>12} {:>14}",
        "method", "bands", "docs", "docs/s", "RSS B/doc", "checkpoint B/doc"
    );
    for k in sizes {
        for method in ["band", "cluster"] {
            measure(method, bands, k * 1000);
        }
    }
}
