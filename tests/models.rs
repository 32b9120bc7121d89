//! Bringing your own model: GGUF tensor types and model families, each checked against llama.cpp's
//! own Python package (`gguf`, PyPI) and a numpy forward pass written from the published
//! architectures (`scripts/gguf_testdata.py`). Needs the test venv (`scripts/test.sh`).

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;
use wrapflow::operators::model::ggml::type_name;
use wrapflow::operators::model::gguf::Gguf;
use wrapflow::operators::model::quant::{dequantize, keeps_four_bits, linear};

fn python() -> String {
    std::env::var("WRAPFLOW_TEST_PYTHON")
        .expect("WRAPFLOW_TEST_PYTHON is not set: run the tests through scripts/test.sh")
}

/// Runs `scripts/gguf_testdata.py` with `args`, panicking with its stderr on failure.
fn testdata(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf_testdata.py");
    let out = Command::new(python()).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "gguf_testdata.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_tensor_type_dequantizes_as_llama_cpp_does() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("types.gguf");
    testdata(&["types", path.to_str().unwrap()]);
    let g = Gguf::open(&path).unwrap();
    let mut seen = vec![];
    for t in g.tensors.iter().filter(|t| t.name.starts_with("t.")) {
        let name = type_name(t.ggml_type);
        assert_eq!(t.name, format!("t.{name}"), "the file's type ids name the same types");
        let reference = dequantize(&g, g.tensor(&format!("ref.{name}")).unwrap()).unwrap();
        let got = dequantize(&g, t).unwrap();
        assert_eq!(got.len(), reference.len());
        assert!(reference.iter().any(|v| *v != 0.0));
        for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{name} element {i}: {a} vs {b}");
        }
        if keeps_four_bits(t.ggml_type) {
            let four = linear(&g, t, true, None).unwrap().to_f32();
            assert_eq!(four, got, "{name} kept as 4-bit blocks of 32 holds the same values");
        }
        seen.push(name);
    }
    assert_eq!(seen, ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]);
}
