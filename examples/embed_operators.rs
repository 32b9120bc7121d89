//! Embedding wrapflow's operators in your own timely dataflow: documents from anywhere, exact
//! dedup and chunking from wrapflow, then your own operators.
//!
//! cargo run --example embed_operators -- --workers 2

use std::sync::Arc;

use timely::dataflow::operators::{Inspect, ToStream};
use wrapflow::operators::{ChunkConfig, ChunkDocs, Dedup, DedupConfig, Document, StageContext, testkit};

fn main() {
    let workers = std::env::args().skip_while(|a| a != "--workers").nth(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    // Any tokenizer.json works; the test kit's tiny one needs no download.
    let tokenizer = Arc::new(testkit::tiny_tokenizer());
    let chunk = ChunkConfig { max_tokens: 32, ..Default::default() };
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        // Every stage takes its config and the worker's context (here: no checkpoints, and the
        // tokenizer the chunk stage needs); the stages count into `ctx.metrics`.
        let ctx = StageContext::default().with_tokenizer(tokenizer.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            // Each worker makes a few documents; the same text on two workers is deduplicated.
            let docs: Vec<Document> = testkit::SAMPLE_TEXT
                .split("\n\n")
                .enumerate()
                .map(|(i, text)| Document {
                    id: format!("w{index}-p{i}"),
                    text: text.to_string(),
                    source_file: format!("worker-{index}"),
                    source_line: i as u64 + 1,
                    dedup_key: xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
                })
                .collect();
            let docs = docs.to_stream(scope).container::<Vec<_>>().dedup(&DedupConfig::default(), &ctx);
            let (chunks, rejects) = docs.chunk_docs(&chunk, &ctx);
            chunks.inspect(move |c| {
                println!("worker {index}: {} #{} ({} tokens): {:?}", c.doc_id, c.chunk_index, c.n_tokens, c.text)
            });
            rejects.inspect(|r| eprintln!("rejected: {r:?}"));
        });
        while worker.step() {}
        println!("worker {index}: {} chunks", ctx.metrics.counter("chunk.chunks"));
    })
    .expect("timely runs");
}
