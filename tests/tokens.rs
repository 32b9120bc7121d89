//! Token shards read back by an independent reader: numpy, following only the format documented
//! in `operators/src/tokens.rs` (WRAPFLOW_TEST_PYTHON from `scripts/test.sh`).

use std::process::Command;

use wrapflow::operators::io::tokens::{TokenShard, TokenShardWriter};

#[test]
fn numpy_reads_token_shards_of_both_widths() {
    let dir = tempfile::TempDir::new().unwrap();
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    for (vocab, eos) in [(49_152usize, 2u32), (150_000, 100_257)] {
        let docs: Vec<Vec<u32>> =
            (0..50u32).map(|d| (0..(d % 7)).map(|i| (d * 977 + i * 31) % vocab as u32).collect()).collect();
        let mut w = TokenShardWriter::new(vocab, eos);
        docs.iter().for_each(|d| w.push(d).unwrap());
        let (bin, idx) = w.finish();
        assert_eq!(TokenShard::parse(&bin, &idx).unwrap().docs(), docs.len());
        let (b, i) = (dir.path().join(format!("s{vocab}.bin")), dir.path().join(format!("s{vocab}.idx")));
        std::fs::write(&b, &bin).unwrap();
        std::fs::write(&i, &idx).unwrap();
        let script = r#"
import json, sys
import numpy as np
idx = open(sys.argv[2], "rb").read()
assert idx[:8] == b"WFTOKIDX"
version, width, eos, _ = np.frombuffer(idx, "<u4", count=4, offset=8)
docs = int(np.frombuffer(idx, "<u8", count=1, offset=24)[0])
offsets = np.frombuffer(idx, "<u8", count=docs + 1, offset=32)
ids = np.memmap(sys.argv[1], dtype="<u2" if width == 2 else "<u4", mode="r")
assert offsets[-1] == len(ids)
out = [ids[offsets[k]:offsets[k + 1]].tolist() for k in range(docs)]
assert all(d[-1] == eos for d in out)
print(json.dumps({"width": int(width), "docs": [d[:-1] for d in out]}))
"#;
        let out = Command::new(&python).arg("-c").arg(script).arg(&b).arg(&i).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["width"], if vocab > 65_536 { 4 } else { 2 });
        let got: Vec<Vec<u32>> = serde_json::from_value(v["docs"].clone()).unwrap();
        assert_eq!(got, docs);
    }
}
