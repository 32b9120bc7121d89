//! Memory of exact dedup's state: bytes per distinct document in the dedup operator's key set.
//!
//! `cargo run --example bench_dedup_state -- 1 10 40` inserts that many million distinct keys
//! (uniform 64-bit hashes, as the operator stores them) and prints the resident memory added per
//! key, next to the 8 bytes of the key itself; then what a checkpoint of that set costs: bytes
//! per key of a full save (what a delta holds per new key is the same) and save / load time.

use std::time::Instant;

use wrapflow_operators::stages::dedup::exact::KeySet;
use wrapflow_operators::stages::dedup::owners::KeyState;
use wrapflow_operators::state::checkpoint::Stateful;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1, 10] } else { sizes };
    println!("{:>10} {:>14} {:>12} {:>14}", "keys (M)", "set bytes", "bytes/key", "capacity/key");
    for m in sizes {
        let n = m * 1_000_000;
        let before = rss_bytes();
        let mut set = KeySet::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            set.insert(x);
        }
        let used = rss_bytes().saturating_sub(before);
        println!("{:>10} {:>14} {:>12.1} {:>14.2}", m, used, used as f64 / n as f64, set.capacity() as f64 / n as f64);
        let mut state = KeyState::default();
        state.seen = set;
        let t = Instant::now();
        let saved = state.save(true).expect("save");
        let save_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut back = KeyState::default();
        back.load(&saved.bytes).expect("load");
        let load_s = t.elapsed().as_secs_f64();
        assert_eq!(back.seen.len(), state.seen.len());
        println!(
            "{:>10} checkpoint: {:.2} bytes/key on disk, save {:.2} s ({:.0} M keys/s), load {:.2} s ({:.0} M keys/s)",
            "",
            saved.bytes.len() as f64 / n as f64,
            save_s,
            m as f64 / save_s,
            load_s,
            m as f64 / load_s
        );
    }
}
