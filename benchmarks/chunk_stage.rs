//! Benchmark of the first half of the pipeline: read → SQL filters → dedup → chunk → Parquet,
//! against the tokenizer alone on the same text (the ceiling), at several corpus sizes.
//!
//! cargo run --example bench_chunk_stage -- [SIZE_MB ...]        (default: 100 1000)
//!
//! Needs `scripts/setup.sh` (BBC corpus and SmolLM2 tokenizer). The corpus is the BBC articles
//! replicated to SIZE_MB with fresh ids; each copy starts with "Copy N." so that exact dedup does
//! not reduce the copies to one. Each measurement runs in a fresh process so peak RSS is its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const TOKENIZER: &str = "models/smollm2-135m-instruct/tokenizer.json";
const BBC: &str = "data/bbc/bbc.jsonl";

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes SIZE_MB of replicated BBC articles as 8 JSONL files.
fn corpus(size_mb: usize) -> PathBuf {
    let dir = PathBuf::from(format!("target/bench-data/bbc-{size_mb}mb"));
    if dir.join("done").exists() {
        return dir;
    }
    let articles: Vec<serde_json::Value> = std::fs::read_to_string(BBC)
        .expect("run scripts/setup.sh first")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<_> = (0..8)
        .map(|i| std::io::BufWriter::new(std::fs::File::create(dir.join(format!("part-{i}.jsonl"))).unwrap()))
        .collect();
    let (mut written, mut copy, mut n) = (0usize, 0usize, 0usize);
    while written < size_mb << 20 {
        for a in &articles {
            let text = format!("Copy {copy}. {}", a["text"].as_str().unwrap());
            let line =
                serde_json::json!({"id": format!("c{copy}-{}", a["id"].as_str().unwrap()), "text": text}).to_string();
            writeln!(files[n % 8], "{line}").unwrap();
            written += line.len() + 1;
            n += 1;
        }
        copy += 1;
    }
    drop(files);
    std::fs::write(dir.join("done"), b"").unwrap();
    dir
}

fn input_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

/// The tokenizer alone: encode every text of the corpus, on `threads` threads.
fn ceiling(dir: &Path, threads: usize) {
    let mut texts = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            for l in std::fs::read_to_string(p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                texts.push(v["text"].as_str().unwrap().to_string());
            }
        }
    }
    let tok = Arc::new(tokenizers::Tokenizer::from_file(TOKENIZER).unwrap());
    let texts = Arc::new(texts);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (tok, texts) = (tok.clone(), texts.clone());
            std::thread::spawn(move || {
                texts
                    .iter()
                    .skip(t)
                    .step_by(threads)
                    .map(|s| tok.encode_fast(s.as_str(), false).unwrap().len())
                    .sum::<usize>()
            })
        })
        .collect();
    let tokens: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = t0.elapsed().as_secs_f64();
    let bytes = input_bytes(dir) as f64;
    println!(
        "{{\"what\":\"tokenizer alone\",\"threads\":{threads},\"mb_per_s\":{:.2},\"docs_per_s\":{:.0},\"tokens\":{tokens},\"secs\":{secs:.2},\"peak_rss_mb\":{:.0}}}",
        bytes / 1e6 / secs,
        texts.len() as f64 / secs,
        peak_rss_mb()
    );
}

/// The whole stage through plans/chunk.sql.
fn stage(dir: &Path, workers: usize) {
    let out = PathBuf::from(format!("target/bench-out/{}-w{workers}", dir.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_dir_all(&out);
    let sets = vec![
        ("input".to_string(), dir.display().to_string()),
        ("output".to_string(), out.display().to_string()),
        ("tokenizer".to_string(), TOKENIZER.to_string()),
    ];
    let plan = wrapflow::plan::Plan::load("plans/chunk.sql", &sets).unwrap();
    let t0 = Instant::now();
    let m = wrapflow::job::run::run(&plan, &wrapflow::job::run::RunOptions { workers, ..Default::default() }).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"what\":\"chunk stage\",\"threads\":{workers},\"mb_per_s\":{:.2},\"docs_per_s\":{:.0},\"tokens\":{},\"secs\":{secs:.2},\"peak_rss_mb\":{:.0},\"kept\":{},\"chunks\":{}}}",
        input_bytes(dir) as f64 / 1e6 / secs,
        m.counts.read as f64 / secs,
        m.tokens.chunks,
        peak_rss_mb(),
        m.counts.kept,
        m.counts.chunks
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--ceiling") => return ceiling(Path::new(&args[1]), args[2].parse().unwrap()),
        Some("--stage") => return stage(Path::new(&args[1]), args[2].parse().unwrap()),
        _ => {}
    }
    let sizes: Vec<usize> =
        if args.is_empty() { vec![100, 1000] } else { args.iter().map(|a| a.parse().unwrap()).collect() };
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for size in sizes {
        let dir = corpus(size);
        for (mode, threads) in [("--ceiling", 1), ("--stage", 1), ("--ceiling", 2), ("--stage", 2)] {
            let out = Command::new(&exe).args([mode, dir.to_str().unwrap(), &threads.to_string()]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            eprintln!("{size} MB: {v}");
            rows.push((size, v));
        }
    }
    println!("| input | what | threads | MB/s | docs/s | peak RSS MB | stage / ceiling |");
    println!("|---|---|---|---|---|---|---|");
    for (size, v) in &rows {
        let ceil = rows
            .iter()
            .find(|(s, c)| s == size && c["what"] == "tokenizer alone" && c["threads"] == v["threads"])
            .map(|(_, c)| c["mb_per_s"].as_f64().unwrap())
            .unwrap();
        let ratio = if v["what"] == "chunk stage" {
            format!("{:.0}%", 100.0 * v["mb_per_s"].as_f64().unwrap() / ceil)
        } else {
            String::new()
        };
        println!(
            "| {size} MB | {} | {} | {} | {} | {} | {ratio} |",
            v["what"].as_str().unwrap(),
            v["threads"],
            v["mb_per_s"],
            v["docs_per_s"],
            v["peak_rss_mb"]
        );
    }
}
