//! Throughput and memory of the mix stage alone: crafted rows (a real row and three styles per
//! chunk, 80–250 tokens each) through the `Mix` operator on one worker, into 1M-token Parquet
//! shards in a temporary directory, with the WRAP mixture (1:1, equal styles, shuffled).
//!
//! `cargo run --example bench_mix_stage -- 0.2 1` (millions of rows, one run per argument) prints
//! rows/s, MB/s of text, shards and peak RSS. Every row of a mixture meets on worker 0, so this
//! rate bounds a cluster's mixing throughput.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect};
use wrapflow_operators::io::store::StoreRegistry;
use wrapflow_operators::{Mix, MixConfig, MixEvent, MixRow, MixStageConfig, StageContext};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

const WORDS: [&str; 12] =
    ["council", "budget", "schools", "roads", "million", "pounds", "years", "team", "light", "wood", "ring", "climate"];

/// Documents per input batch (as a run that rephrases: 32 documents).
const DOCS: usize = 32;

/// The rows of batch `t`: per document a real row and three styles. Made on the fly so that the
/// input does not count in the memory figure.
fn batch(t: usize) -> Vec<MixRow> {
    let styles = ["easy", "medium", "qa"];
    let mut out = Vec::with_capacity(DOCS * 4);
    for d in t * DOCS..(t + 1) * DOCS {
        let text: String = (0..150).map(|k| WORDS[(d * 7 + k * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ");
        let real = MixRow {
            text,
            kind: "real".into(),
            doc_id: format!("doc{d:08}"),
            n_tokens: 80 + (d * 37 % 170) as u32,
            source_file: format!("part-{}.jsonl", d / 10_000),
            source_line: d as u64 + 1,
            ..Default::default()
        };
        for (k, st) in styles.iter().enumerate() {
            out.push(MixRow {
                kind: "synthetic".into(),
                style: st.to_string(),
                n_tokens: 40 + ((d * 13 + k * 29) % 200) as u32,
                cosine: Some(0.8),
                ..real.clone()
            });
        }
        out.push(real);
    }
    out
}

fn main() {
    let sizes: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    for millions in if sizes.is_empty() { vec![0.2] } else { sizes } {
        let batches = ((millions * 1e6) as usize).div_ceil(DOCS * 4);
        let n = batches * DOCS * 4;
        let bytes: usize = batch(0).iter().map(|r| r.text.len()).sum::<usize>() * batches;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let location = StoreRegistry::new().resolve(dir.path().to_str().expect("utf-8 path"), &Default::default());
        let (location, handle) = (location.expect("local store"), rt.handle().clone());
        let styles: Vec<String> = ["easy", "medium", "qa"].iter().map(|s| s.to_string()).collect();
        let mix = MixStageConfig { mixtures: vec![("wrap".into(), MixConfig::default())], styles };
        let shards = Arc::new(Mutex::new(0usize));
        let t0 = Instant::now();
        let s = shards.clone();
        timely::execute(timely::Config::thread(), move |worker| {
            let mut input = InputHandle::new();
            let s = s.clone();
            let ctx = StageContext::default().with_output(location.clone(), handle.clone());
            worker.dataflow::<u64, _, _>(|scope| {
                scope.input_from(&mut input).container::<Vec<MixRow>>().mix(&mix, &ctx).inspect(
                    move |ev: &MixEvent| {
                        if let MixEvent::Shard(_) = ev {
                            *s.lock().expect("lock") += 1
                        }
                    },
                );
            });
            for t in 0..batches {
                input.send_batch(&mut batch(t));
                input.advance_to(t as u64 + 1);
                worker.step();
            }
            drop(input);
            while worker.step() {}
            if let Some(e) = ctx.first_error() {
                panic!("{e}");
            }
        })
        .expect("timely")
        .join();
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{n} rows ({:.0} MB of text): {secs:.1} s, {:.0} rows/s, {:.1} MB/s, {} shards, peak RSS {:.0} MB",
            bytes as f64 / 1e6,
            n as f64 / secs,
            bytes as f64 / 1e6 / secs,
            shards.lock().expect("lock"),
            peak_rss_mb()
        );
    }
}
