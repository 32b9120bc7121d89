//! Hostile model files: a GGUF whose numbers overflow, nest without end or lie about its
//! tensors, a safetensors file that lies about its tensors, and a config that divides by zero,
//! must each be a clear error, never a panic, an abort or a huge allocation. Bounded fuzz runs
//! mutate a small valid GGUF, and a small valid Hugging Face folder, many ways.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::formats::gguf::Gguf;
use crate::model::import::inspect::importable;
use crate::model::import::{WeightFormat, llama_config, llama_weights};

/// A GGUF file built in memory: metadata, then tensors (F32) with their data.
#[derive(Default)]
struct Builder {
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<(String, Vec<u64>)>,
}

impl Builder {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn str(mut self, key: &str, v: &str) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        Self::string(&mut self.kv, v);
        self.n_kv += 1;
        self
    }

    fn u32(mut self, key: &str, v: u32) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }

    fn strings(mut self, key: &str, v: &[&str]) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|s| Self::string(&mut self.kv, s));
        self.n_kv += 1;
        self
    }

    /// `raw` as the value of `key`, of type `ty`.
    fn raw(mut self, key: &str, ty: u32, raw: &[u8]) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(raw);
        self.n_kv += 1;
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64]) -> Self {
        self.tensors.push((name.to_string(), dims.to_vec()));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        let mut offset = 0u64;
        let mut data = Vec::new();
        for (name, dims) in &self.tensors {
            Self::string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(0u32.to_le_bytes());
            out.extend(offset.to_le_bytes());
            // Small tensors only: a huge one is the point of some tests, and holds no data.
            let n = dims.iter().fold(1u64, |a, &d| a.saturating_mul(d)).min(1 << 12);
            data.extend((0..n).flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes()));
            while !data.len().is_multiple_of(32) {
                data.push(0);
            }
            offset = data.len() as u64;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(data);
        out
    }
}

/// A valid 1-layer llama of hidden size 8 (2 heads of 4, 1 KV head) over 4 tokens.
fn tiny_llama() -> Builder {
    let mut b = Builder::default()
        .str("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .u32("llama.embedding_length", 8)
        .u32("llama.feed_forward_length", 16)
        .u32("llama.attention.head_count", 2)
        .u32("llama.attention.head_count_kv", 1)
        .u32("llama.context_length", 64)
        .str("tokenizer.ggml.model", "gpt2")
        .strings("tokenizer.ggml.tokens", &["a", "b", "ab", "c"])
        .strings("tokenizer.ggml.merges", &["a b"])
        .tensor("token_embd.weight", &[8, 4])
        .tensor("output_norm.weight", &[8]);
    for (name, dims) in [
        ("attn_norm", [8, 0]),
        ("attn_q", [8, 8]),
        ("attn_k", [8, 4]),
        ("attn_v", [8, 4]),
        ("attn_output", [8, 8]),
        ("ffn_norm", [8, 0]),
        ("ffn_gate", [8, 16]),
        ("ffn_up", [8, 16]),
        ("ffn_down", [16, 8]),
    ] {
        let dims: Vec<u64> = dims.into_iter().filter(|&d| d > 0).collect();
        b = b.tensor(&format!("blk.0.{name}.weight"), &dims);
    }
    b
}

/// Everything `model inspect` and `model import` read before writing, on `bytes`.
fn read_all(bytes: Vec<u8>) -> anyhow::Result<()> {
    let g = Gguf::parse(bytes)?;
    let _ = importable(&g);
    let _ = g.tensors.iter().map(|t| t.elements()).fold(0u64, u64::saturating_add);
    let cfg = llama_config(&g)?;
    llama_weights(&g, &cfg, WeightFormat::Fp32)?;
    llama_weights(&g, &cfg, WeightFormat::Q4)?;
    Ok(())
}

fn error_of(bytes: Vec<u8>) -> String {
    format!("{:#}", read_all(bytes).expect_err("a hostile file is an error"))
}

#[test]
fn the_tiny_file_reads() {
    read_all(tiny_llama().bytes()).unwrap();
}

#[test]
fn hostile_numbers_are_errors() {
    let e = error_of(tiny_llama().tensor("huge", &[1 << 40, 1 << 40]).bytes());
    assert!(e.contains("tensor huge") && e.contains("2^48"), "{e}");
    let e = error_of(tiny_llama().tensor("deep", &[1, 2, 3, 4, 5]).bytes());
    assert!(e.contains("5 dimensions"), "{e}");
    // 100,000 arrays nested in one another.
    let mut nest = Vec::new();
    for _ in 0..100_000 {
        nest.extend(9u32.to_le_bytes());
        nest.extend(1u64.to_le_bytes());
    }
    let e = error_of(tiny_llama().raw("nest", 9, &nest).bytes());
    assert!(e.contains("nested deeper"), "{e}");
    // A string that says it is longer than any file.
    let e = error_of(tiny_llama().raw("long", 8, &u64::MAX.to_le_bytes()).bytes());
    assert!(e.contains("truncated"), "{e}");
    let e = error_of(tiny_llama().u32("general.alignment", 0).bytes());
    assert!(e.contains("alignment"), "{e}");
    let e = error_of(tiny_llama().u32("llama.attention.head_count", 0).bytes());
    assert!(e.contains("attention head count 0 is out of range"), "{e}");
    let e = error_of(tiny_llama().u32("llama.attention.head_count_kv", 3).bytes());
    assert!(e.contains("do not share 3 key/value heads evenly"), "{e}");
    // A tensor whose shape is not the config's.
    let mut b = tiny_llama();
    b.tensors.retain(|t| t.0 != "blk.0.attn_q.weight");
    let e = error_of(b.tensor("blk.0.attn_q.weight", &[8, 6]).bytes());
    assert!(e.contains("blk.0.attn_q.weight has shape [8, 6]"), "{e}");
}

#[test]
fn mutated_files_are_errors_or_models_never_panics() {
    let base = tiny_llama().bytes();
    let mut rng = StdRng::seed_from_u64(7);
    let interesting = [0u64, 1, 3, 255, u32::MAX as u64, 1 << 31, 1 << 40, 1 << 62, u64::MAX];
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..rng.random_range(1..4) {
            if b.len() < 16 {
                break;
            }
            match rng.random_range(0..4) {
                0 => {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
                1 => {
                    let at = rng.random_range(0..b.len().saturating_sub(8));
                    let v = interesting[rng.random_range(0..interesting.len())];
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                2 => {
                    let at = rng.random_range(0..b.len().saturating_sub(4));
                    let v = interesting[rng.random_range(0..interesting.len())] as u32;
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => b.truncate(rng.random_range(0..b.len())),
            }
        }
        let run = std::panic::catch_unwind(|| read_all(b));
        match run {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => failed += 1,
            Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("a mutated file panicked the reader: {msg:?}");
            }
        }
    }
    // Both kinds happened: the mutations reach past the header.
    assert!(ok > 50 && failed > 500, "{ok} read, {failed} refused");
}

/// A Hugging Face folder of a 1-layer llama (hidden 8, 2 heads of 4, 1 KV head, 4 tokens): its
/// `config.json` and `model.safetensors` (f32).
fn tiny_folder(dir: &std::path::Path) -> (serde_json::Value, Vec<u8>) {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 4, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5
    });
    let mut tensors: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![4, 8]), ("model.norm.weight".into(), vec![8])];
    for (name, shape) in [
        ("input_layernorm", vec![8]),
        ("post_attention_layernorm", vec![8]),
        ("self_attn.q_proj", vec![8, 8]),
        ("self_attn.k_proj", vec![4, 8]),
        ("self_attn.v_proj", vec![4, 8]),
        ("self_attn.o_proj", vec![8, 8]),
        ("mlp.gate_proj", vec![16, 8]),
        ("mlp.up_proj", vec![16, 8]),
        ("mlp.down_proj", vec![8, 16]),
    ] {
        tensors.push((format!("model.layers.0.{name}.weight"), shape));
    }
    let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        data.extend((0..n).flat_map(|i| ((i % 5) as f32 * 0.1).to_le_bytes()));
        let entry = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]});
        header.insert(name, entry);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    crate::testkit::write_tiny_tokenizer(&dir.join("tokenizer.json")).unwrap();
    (config, file)
}

#[test]
fn mutated_folders_and_configs_are_errors_or_models_never_panics() {
    let dir = tempfile::TempDir::new().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("out"));
    std::fs::create_dir_all(&src).unwrap();
    let (config, weights) = tiny_folder(&src);
    let import = |config: &serde_json::Value, weights: &[u8]| {
        std::fs::write(src.join("config.json"), serde_json::to_vec(config).unwrap()).unwrap();
        std::fs::write(src.join("model.safetensors"), weights).unwrap();
        let _ = crate::model::import::hf::inspect_folder(&src);
        crate::model::import::hf::import_folder(&src, &out, &Default::default())
    };
    import(&config, &weights).expect("the tiny folder imports");
    let mut zero = config.clone();
    zero["num_attention_heads"] = serde_json::json!(0);
    let e = format!("{:#}", import(&zero, &weights).unwrap_err());
    assert!(e.contains("attention head count 0 is out of range"), "{e}");
    let keys: Vec<String> = config.as_object().unwrap().keys().cloned().collect();
    let values = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(3),
        serde_json::json!(1u64 << 40),
        serde_json::json!(u64::MAX),
        serde_json::json!("8"),
        serde_json::Value::Null,
    ];
    let mut rng = StdRng::seed_from_u64(11);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..400 {
        let mut c = config.clone();
        let mut w = weights.clone();
        for _ in 0..rng.random_range(1..3) {
            if rng.random_bool(0.5) {
                let k = &keys[rng.random_range(0..keys.len())];
                c[k] = values[rng.random_range(0..values.len())].clone();
            } else {
                // The safetensors header (its length, shapes and offsets) or the data.
                let at = rng.random_range(0..w.len().min(900));
                w[at] = rng.random();
            }
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| import(&c, &w)));
        match run {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => failed += 1,
            Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("a mutated folder panicked the import: {msg:?}\nconfig {c}");
            }
        }
    }
    assert!(ok > 20 && failed > 100, "{ok} imported, {failed} refused");
}

#[test]
fn a_folder_without_weights_is_not_importable() {
    let dir = tempfile::TempDir::new().unwrap();
    let (config, _) = tiny_folder(dir.path());
    std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    // A safetensors file that holds no tensor: an 8-byte length and the header `{}`.
    let empty = [2u64.to_le_bytes().as_slice(), b"{}"].concat();
    std::fs::write(dir.path().join("model.safetensors"), empty).unwrap();
    let why = crate::model::import::hf::inspect_folder(dir.path()).unwrap().importable.unwrap_err();
    assert!(why.contains("no weights"), "{why}");
}
