//! Generation throughput of the engine: prefill, decode and end-to-end generated tokens per
//! second at several batch sizes, on 16 chat prompts holding ~300-token BBC chunks with 128 new
//! tokens each (greedy, EOS ignored). Writes the generated ids for comparison with
//! `benchmarks/ort_reference.py`.
//!
//! cargo run --example bench_engine -- MODEL_DIR [BATCH ...]      (default batches: 1 8 16 32)
//!
//! `THREADS=n` sets the session's intra-op threads. `SESSIONS=n` instead runs n sessions of one
//! thread each, on n threads of this process, each decoding every n-th prompt with `BATCH / n`
//! rows: the way wrapflow's workers each hold a one-thread session.

use std::time::Instant;

use anyhow::Context;
use wrapflow::operators::engine::{self, Decoder, GenerationConfig, Prompt, SessionConfig};

/// One session's timing and its (prompt index, generated ids).
type SessionRun = (engine::Timing, Vec<(usize, Vec<u32>)>);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().context("usage: bench_engine MODEL_DIR [BATCH ...]")?;
    let batches: Vec<usize> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| a.parse().with_context(|| format!("batch size {a:?} is not a number")))
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![1, 8, 16, 32]
    };
    let sessions: usize = std::env::var("SESSIONS").ok().and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    let threads: usize = match sessions {
        1 => std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(0),
        _ => 1,
    };
    let session =
        SessionConfig { intra_threads: threads, cpu_arena: std::env::var("NO_ARENA").is_err(), ..Default::default() };
    let mut dec = Decoder::load(std::path::Path::new(model), &session)?;
    let corpus = "data/bbc/bbc.jsonl";
    let articles: Vec<String> = std::fs::read_to_string(corpus)
        .with_context(|| format!("reading {corpus} (run scripts/setup.sh)"))?
        .lines()
        .take(16)
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("{corpus} line {}", i + 1))?;
            v["text"].as_str().map(str::to_string).with_context(|| format!("{corpus} line {}: no text", i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut prompts = Vec::new();
    for (i, a) in articles.iter().enumerate() {
        let ids = dec.tokenizer.encode(a.as_str(), false).map_err(anyhow::Error::msg)?.get_ids().to_vec();
        let chunk = dec.tokenizer.decode(&ids[..ids.len().min(300)], false).map_err(anyhow::Error::msg)?;
        let instruction = format!("Rewrite the following text in clear, simple English.\n\n{chunk}");
        // A base model (no chat template) gets the instruction as plain text.
        let text = match dec.chat_template {
            Some(_) => engine::chat_prompt(&dec, &serde_json::json!([{"role": "user", "content": instruction}]))?,
            None => format!("{instruction}\n\nRewritten text:\n"),
        };
        let ids = dec.encode_prompt(&text)?;
        prompts.push(Prompt { id: i.to_string(), ids, max_new_tokens: None, ..Default::default() });
    }
    std::fs::create_dir_all("target/bench-out")?;
    let prompt_json: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    std::fs::write("target/bench-out/engine_prompts.json", serde_json::to_vec(&prompt_json)?)?;
    println!("| model | batch | threads | prefill tok/s | decode tok/s | generated tok/s | wall s |");
    println!("|---|---|---|---|---|---|---|");
    let mut extra: Vec<Decoder> =
        (1..sessions).map(|_| Decoder::load(std::path::Path::new(model), &session)).collect::<anyhow::Result<_>>()?;
    for b in batches {
        let cfg = GenerationConfig {
            max_new_tokens: 128,
            batch_size: b.div_ceil(sessions),
            ignore_eos: true,
            ..Default::default()
        };
        let t0 = Instant::now();
        // Session s decodes prompts s, s + n, s + 2n, ...
        let decoders: Vec<&mut Decoder> = std::iter::once(&mut dec).chain(extra.iter_mut()).collect();
        let results: Vec<anyhow::Result<SessionRun>> = std::thread::scope(|scope| {
            let handles: Vec<_> = decoders
                .into_iter()
                .enumerate()
                .map(|(s, d)| {
                    let mine: Vec<(usize, Prompt)> =
                        prompts.iter().cloned().enumerate().filter(|(i, _)| i % sessions == s).collect();
                    let cfg = cfg.clone();
                    scope.spawn(move || {
                        let (index, ps): (Vec<usize>, Vec<Prompt>) = mine.into_iter().unzip();
                        let mut outs = vec![];
                        let t = engine::generate(d, ps, &cfg, |c| outs.push((index[c.index], c.token_ids)))?;
                        Ok((t, outs))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a session thread panicked")).collect()
        });
        let wall = t0.elapsed().as_secs_f64();
        let mut outs = vec![vec![]; prompts.len()];
        let (mut prefill, mut decode) = (0.0, 0.0);
        for r in results {
            let (t, o) = r?;
            // Sessions run at once: rates add up.
            prefill += t.prefill_tokens as f64 / t.prefill_s;
            decode += t.decode_tokens as f64 / t.decode_s;
            o.into_iter().for_each(|(i, ids)| outs[i] = ids);
        }
        let generated: usize = outs.iter().map(Vec::len).sum();
        let threads = if sessions > 1 { format!("{sessions} × 1") } else { threads.to_string() };
        println!(
            "| {model} | {b} | {threads} | {prefill:.0} | {decode:.1} | {:.1} | {wall:.1} |",
            generated as f64 / wall
        );
        std::fs::write(format!("target/bench-out/engine_ids_b{b}.json"), serde_json::to_vec(&outs)?)?;
    }
    Ok(())
}
