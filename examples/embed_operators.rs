//! Embedding wrapflow's operators in your own timely dataflow: documents from anywhere, exact
//! dedup and chunking from wrapflow, then your own operators.
//!
//! cargo run --example embed_operators -- --workers 2

use std::sync::Arc;

use timely::dataflow::operators::{Inspect, ToStream};
use wrapflow::operators::{ChunkConfig, ChunkDocs, Chunker, Dedup, DedupConfig, Document, testkit};

fn main() {
    let workers = std::env::args().skip_while(|a| a != "--workers").nth(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    // Any tokenizer.json works; the test kit's tiny one needs no download.
    let chunker = Arc::new(
        Chunker::new(&ChunkConfig { max_tokens: 32, ..Default::default() }, Arc::new(testkit::tiny_tokenizer()))
            .expect("valid chunk settings"),
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let chunker = chunker.clone();
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
            let (chunks, rejects) =
                docs.to_stream(scope).container::<Vec<_>>().dedup(&DedupConfig::default()).chunk_docs(chunker);
            chunks.inspect(move |c| {
                println!("worker {index}: {} #{} ({} tokens): {:?}", c.doc_id, c.chunk_index, c.n_tokens, c.text)
            });
            rejects.inspect(|r| eprintln!("rejected: {r:?}"));
        });
    })
    .expect("timely runs");
}
