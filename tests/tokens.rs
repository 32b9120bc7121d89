//! Token shards against Megatron-core's own code (megatron-core 0.16.1's `indexed_dataset.py`,
//! loaded by `tests/fixtures/megatron_indexed.py`; WRAPFLOW_TEST_PYTHON from `scripts/test.sh`):
//! its `IndexedDataset` reads what wrapflow writes, and its `IndexedDatasetBuilder` writes the same
//! bytes from the same token ids.

use std::path::Path;
use std::process::Command;

use wrapflow::operators::io::tokens::{TokenShard, TokenShardWriter};

fn megatron(args: &[&str]) -> String {
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/megatron_indexed.py");
    let out = Command::new(python).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "megatron_indexed.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn megatron_core_reads_token_shards_and_its_builder_writes_the_same_bytes() {
    let dir = tempfile::TempDir::new().unwrap();
    // SmolLM2's vocabulary (uint16), one just past Megatron's uint16 limit and a 150k one (int32).
    for (vocab, eos) in [(49_152usize, 2u32), (65_500, 65_499), (150_000, 100_257)] {
        let docs: Vec<Vec<u32>> =
            (0..50u32).map(|d| (0..(d % 7)).map(|i| (d * 977 + i * 31 + 60_000) % vocab as u32).collect()).collect();
        let mut w = TokenShardWriter::new(vocab, eos);
        docs.iter().for_each(|d| w.push(d).unwrap());
        let (bin, idx) = w.finish();
        assert_eq!(TokenShard::parse(&bin, &idx).unwrap().docs(), docs.len());
        let ours = dir.path().join(format!("ours{vocab}"));
        std::fs::write(ours.with_extension("bin"), &bin).unwrap();
        std::fs::write(ours.with_extension("idx"), &idx).unwrap();
        // What a document is to Megatron: its ids then EOS, one sequence.
        let with_eos: Vec<Vec<u32>> = docs.iter().map(|d| d.iter().copied().chain([eos]).collect()).collect();
        let json = dir.path().join(format!("docs{vocab}.json"));
        std::fs::write(&json, serde_json::to_vec(&with_eos).unwrap()).unwrap();

        let read: serde_json::Value =
            serde_json::from_str(&megatron(&["check", ours.to_str().unwrap(), json.to_str().unwrap()])).unwrap();
        assert_eq!(read["dtype"], if vocab < 65_500 { "uint16" } else { "int32" });
        assert_eq!(read["sequences"], docs.len());

        let theirs = dir.path().join(format!("theirs{vocab}"));
        megatron(&["build", theirs.to_str().unwrap(), &vocab.to_string(), json.to_str().unwrap()]);
        assert!(std::fs::read(theirs.with_extension("idx")).unwrap() == idx, "the .idx differs from Megatron's");
        assert!(std::fs::read(theirs.with_extension("bin")).unwrap() == bin, "the .bin differs from Megatron's");
    }
}
