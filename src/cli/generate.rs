//! `wrapflow generate`: try a model by hand, with the engine's settings as flags.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use wrapflow_operators::engine::{self, Decoder, GenerationConfig, Prompt, Provider, SessionConfig};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model directory (from `wrapflow model import`, or any optimum-style decoder export)
    #[arg(long)]
    pub model: PathBuf,
    /// One prompt, used as is (with --chat: as a user message in the chat template)
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// JSONL file: one object per line with `prompt` (used as is) or `messages` (a chat)
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Format --prompt with the model's chat template
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 128)]
    pub max_new: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Greedy decoding (the default unless --temperature is set)
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Block repeating n-grams of the generated tokens
    #[arg(long, default_value_t = 0)]
    pub no_repeat_ngram: usize,
    /// Stop strings (repeatable)
    #[arg(long)]
    pub stop: Vec<String>,
    /// Generate exactly --max-new tokens
    #[arg(long)]
    pub ignore_eos: bool,
    /// Memory (MB) for prompt prefixes that later prompts are prefilled from (0: off)
    #[arg(long, default_value_t = 1024)]
    pub prefix_cache_mb: usize,
    /// Threads per session (0: ONNX Runtime's default)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub provider: ProviderArg,
    /// Print JSON: {"outputs": [{"id", "text", "token_ids"}], "timing": {...}}
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProviderArg {
    Cpu,
    Cuda,
}

fn prompt_text(dec: &Decoder, v: &Value, chat: bool) -> anyhow::Result<String> {
    if let Some(m) = v.get("messages") {
        return engine::chat_prompt(dec, m);
    }
    let p = v.get("prompt").and_then(Value::as_str).context("each line needs `prompt` or `messages`")?;
    if chat { engine::chat_prompt(dec, &json!([{"role": "user", "content": p}])) } else { Ok(p.to_string()) }
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let provider = match a.provider {
        ProviderArg::Cpu => Provider::Cpu,
        ProviderArg::Cuda => Provider::Cuda,
    };
    let mut dec = Decoder::load(&a.model, &SessionConfig { provider, intra_threads: a.threads, ..Default::default() })?;
    // Each prompt with where it came from, for errors.
    let lines: Vec<(String, Value)> = match (&a.prompt, &a.prompts) {
        (Some(p), _) => vec![("--prompt".into(), json!({"id": "0", "prompt": p}))],
        (None, Some(f)) => {
            std::io::BufReader::new(std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?)
                .lines()
                .enumerate()
                .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(|(i, l)| {
                    let at = format!("{}:{}", f.display(), i + 1);
                    let v = serde_json::from_str(&l.with_context(|| format!("reading {at}"))?)
                        .with_context(|| format!("{at}: not a JSON object"))?;
                    Ok((at, v))
                })
                .collect::<anyhow::Result<_>>()?
        }
        (None, None) => anyhow::bail!("give --prompt TEXT or --prompts FILE.jsonl"),
    };
    let mut prompts = Vec::new();
    for (i, (at, v)) in lines.iter().enumerate() {
        let text = prompt_text(&dec, v, a.chat).with_context(|| format!("{at}: bad prompt"))?;
        let ids = dec.encode_prompt(&text)?;
        let id = v.get("id").map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).unwrap_or(i.to_string());
        prompts.push(Prompt { id, ids, max_new_tokens: None, ..Default::default() });
    }
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new,
        batch_size: a.batch,
        temperature: if a.greedy { 0.0 } else { a.temperature },
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        no_repeat_ngram: a.no_repeat_ngram,
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
        prefix_cache_mb: a.prefix_cache_mb,
    };
    let t0 = Instant::now();
    let mut outs = Vec::new();
    let timing = engine::generate(&mut dec, prompts, &cfg, |c| outs.push(c))?;
    let wall = t0.elapsed().as_secs_f64();
    outs.sort_by_key(|c| c.index);
    let generated: usize = outs.iter().map(|c| c.token_ids.len()).sum();
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let timing = json!({
        "wall_s": wall,
        "prefill_tok_s": rate(timing.prefill_tokens, timing.prefill_s),
        "decode_tok_s": rate(timing.decode_tokens, timing.decode_s),
        "gen_tok_s": rate(generated as u64, wall),
    });
    if a.json {
        let outputs: Vec<Value> = outs
            .iter()
            .map(|c| json!({"id": c.id, "text": c.text, "token_ids": c.token_ids, "finish": c.finish}))
            .collect();
        println!("{}", json!({"outputs": outputs, "timing": timing}));
    } else {
        for c in &outs {
            println!("--- {} ({} tokens, {:?})\n{}", c.id, c.token_ids.len(), c.finish, c.text);
        }
        eprintln!(
            "{generated} tokens in {wall:.2} s: {:.1} tok/s generated ({:.0} tok/s prefill, {:.1} tok/s decode)",
            timing["gen_tok_s"].as_f64().unwrap_or(0.0),
            timing["prefill_tok_s"].as_f64().unwrap_or(0.0),
            timing["decode_tok_s"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
