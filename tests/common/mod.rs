//! Shared helpers for the integration tests: corpora, plans and readers made on the spot.

#![allow(dead_code)]

pub mod browser;
pub mod crash;
pub mod s3;

use std::io::Write;
use std::path::{Path, PathBuf};

use wrapflow::job::run::{RunOptions, run};
use wrapflow::plan::Plan;
use wrapflow::report::manifest::Manifest;

pub const SENTENCES: [&str; 8] = [
    "The city council met on Tuesday to discuss the new budget for schools and roads.",
    "Members said the plan would cost 12 million pounds over three years.",
    "Local businesses welcomed the news and said the roads had been in a poor state.",
    "Scientists at the university have found a new way to measure the age of trees.",
    "The method uses light to read the chemical record left in each ring of the wood.",
    "It could help researchers understand how the climate changed over 2,000 years.",
    "The team will publish its results next month in a leading journal.",
    "Other experts said the work was an important step, but that more tests were needed.",
];

/// `n` pseudo-random words from a vocabulary of 3,000, fixed by `seed`.
pub fn random_words(seed: u64, n: usize) -> Vec<String> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("w{}", x % 3000)
        })
        .collect()
}

/// A document of a few paragraphs that passes ordinary quality filters; `i` makes it unique.
pub fn doc_text(i: usize) -> String {
    let mut paras = Vec::new();
    for p in 0..(2 + i % 4) {
        let s: Vec<&str> = (0..4).map(|k| SENTENCES[(i + p * 3 + k) % SENTENCES.len()]).collect();
        paras.push(format!("{} Report {i}, part {p}.", s.join(" ")));
    }
    paras.join("\n\n")
}

pub fn json_line(id: &str, text: &str) -> String {
    serde_json::json!({ "id": id, "text": text }).to_string()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// Writes the tiny test tokenizer into `dir` and returns its path.
pub fn tokenizer(dir: &Path) -> PathBuf {
    let p = dir.join("tokenizer.json");
    wrapflow::operators::testkit::write_tiny_tokenizer(&p).unwrap();
    p
}

/// A plan reading `input` (JSONL) into `output`, with a word-count filter and exact dedup.
pub fn plan_text(extra_options: &str, sink_options: &str) -> String {
    format!(
        "PARAM input; PARAM output; PARAM tokenizer; PARAM max_tokens DEFAULT 64;\n\
         TOKENIZER '${{tokenizer}}';\n\
         CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '${{input}}' {extra_options};\n\
         CREATE VIEW docs AS SELECT * FROM raw WHERE word_count(text) >= 5;\n\
         INPUT docs;\n\
         DEDUP ON text;\n\
         CHUNK WITH (max_tokens = ${{max_tokens}});\n\
         SINK '${{output}}' WITH (shard_rows = 50{sink_options});\n"
    )
}

pub fn run_plan(text: &str, sets: &[(&str, &str)], workers: usize) -> anyhow::Result<Manifest> {
    let sets: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let plan = Plan::parse("test.sql", text, &sets)?;
    run(&plan, &RunOptions { workers, ..Default::default() })
}

/// Every batch of the Parquet shards under `dir`, in file order, read with the parquet crate.
pub fn parquet_batches(dir: &Path) -> Vec<arrow::array::RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|f| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
        })
        .collect()
}

/// Rows of all Parquet shards under `dir`, read with the parquet crate.
pub fn read_chunks(dir: &Path) -> Vec<(String, u32, String, u32, u64, u64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{UInt32Type, UInt64Type};
    let mut rows = Vec::new();
    for b in parquet_batches(dir) {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (text, doc, idx, ntok, start, end) =
            (col("text"), col("doc_id"), col("chunk_index"), col("n_tokens"), col("byte_start"), col("byte_end"));
        for i in 0..b.num_rows() {
            rows.push((
                doc.as_string::<i32>().value(i).to_string(),
                idx.as_primitive::<UInt32Type>().value(i),
                text.as_string::<i32>().value(i).to_string(),
                ntok.as_primitive::<UInt32Type>().value(i),
                start.as_primitive::<UInt64Type>().value(i),
                end.as_primitive::<UInt64Type>().value(i),
            ));
        }
    }
    rows.sort();
    rows
}

/// Reject records (JSON objects) of all reject shards under `dir`.
pub fn read_rejects(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
        }
    }
    out
}

/// Rows of all Parquet shards under `dir` as JSON objects (arrow's JSON writer), sorted.
pub fn read_parquet_rows(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut rows = Vec::new();
    if !dir.exists() {
        return rows;
    }
    for b in parquet_batches(dir) {
        let mut w = arrow::json::ArrayWriter::new(Vec::new());
        w.write(&b).unwrap();
        w.finish().unwrap();
        let v: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&w.into_inner()).unwrap();
        rows.extend(v);
    }
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

/// `GET http://ADDR/PATH` over HTTP/1.1 (the server answers with a length, not chunks).
pub fn get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let (addr, path) = url.strip_prefix("http://")?.split_once('/')?;
    let mut tcp = std::net::TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(tcp, "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

/// Prometheus scrapes parsed by `prometheus_client`'s own parser (tests/fixtures/prom_parse.py):
/// one object per scrape, `name{label=value,...}` to value.
pub fn parse_scrapes(dir: &Path, scrapes: &[String]) -> Vec<serde_json::Value> {
    let files: Vec<_> = scrapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.join(format!("scrape-{i:04}.txt"));
            std::fs::write(&p, s).unwrap();
            p
        })
        .collect();
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prom_parse.py");
    let out = std::process::Command::new(python).arg(script).args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
