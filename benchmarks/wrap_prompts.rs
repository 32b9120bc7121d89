//! Writes the prompts a WRAP run gave its model, one JSON line each (`{"id", "prompt"}`), for
//! `wrapflow generate --prompts`: the engine alone on the pipeline's own work
//! (`benchmarks/pipeline.py` compares the two).
//!
//!     cargo run --example bench_wrap_prompts -- OUT_DIR MODEL_DIR [STYLES=easy,medium,hard,qa] > prompts.jsonl
//!
//! Reads the chunks of `OUT_DIR/chunks/*.parquet` in file and row order and renders every
//! built-in style's request for each as the rephrase stage does (chat template, answer prefix).

use std::path::Path;

use anyhow::Context;
use arrow::array::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use wrapflow::operators::engine::{Decoder, SessionConfig, chat_prompt};
use wrapflow::operators::stages::styles;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: bench_wrap_prompts OUT_DIR MODEL_DIR [STYLES]");
    let dec = Decoder::load(Path::new(&args[2]), &SessionConfig::default())?;
    let names = args.get(3).map_or("easy,medium,hard,qa", String::as_str);
    let styles: Vec<_> = names
        .split(',')
        .map(|n| styles::builtin(n).with_context(|| format!("no built-in style {n}")))
        .collect::<Result<_, _>>()?;
    let mut files: Vec<_> = std::fs::read_dir(Path::new(&args[1]).join("chunks"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files.sort();
    let mut n = 0;
    for file in files {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?.build()? {
            let batch = batch?;
            let text = batch.column_by_name("text").context("chunks without a text column")?.as_string::<i32>();
            for chunk in text.iter().flatten() {
                for s in &styles {
                    let prompt = chat_prompt(&dec, &s.messages(chunk))? + &s.answer_prefix;
                    println!("{}", json!({"id": format!("{n}-{}", s.name), "prompt": prompt}));
                }
                n += 1;
            }
        }
    }
    eprintln!("{} prompts from {n} chunks", n * styles.len());
    Ok(())
}
