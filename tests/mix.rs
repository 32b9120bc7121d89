//! The mix stage on crafted rows: token ratios per shard and overall, each shortfall policy on
//! uneven input, curriculum order, determinism, several mixtures at once, streaming, and token
//! shards read back by the library and by numpy + pyarrow from their metadata alone.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::AsArray;
use arrow::datatypes::{UInt32Type, UInt64Type};
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect};
use wrapflow::operators::io::store::StoreRegistry;
use wrapflow::operators::io::tokens::TokenShard;
use wrapflow::operators::{Mix, MixConfig, MixEvent, MixRow, MixStageConfig, MixSummary, Mixture, StageContext};

const STYLES: [&str; 3] = ["easy", "medium", "qa"];

/// Rows of `docs` documents in epochs of 25 documents: each document has 1–3 chunks, a real row
/// per chunk and one row per style, with lengths that differ by kind and style. Documents
/// `d % 10 < 3` come from `news/`, the others from `wiki/`.
fn corpus(docs: usize, synthetic_every: usize) -> Vec<Vec<MixRow>> {
    let mut epochs = vec![Vec::new(); docs.div_ceil(25)];
    for d in 0..docs {
        let source = if d % 10 < 3 { "news" } else { "wiki" };
        for c in 0..(1 + d % 3) as u32 {
            let text = format!("{} Doc {d} chunk {c}.", common::SENTENCES[(d + c as usize) % 8]);
            let base = MixRow {
                text: text.clone(),
                kind: "real".into(),
                doc_id: format!("doc{d:05}"),
                chunk_index: c,
                n_tokens: 80 + ((d * 37 + c as usize * 11) % 170) as u32,
                source_file: format!("{source}/f{}.jsonl", d / 100),
                source_line: d as u64 + 1,
                ..Default::default()
            };
            epochs[d / 25].push(base.clone());
            if d % synthetic_every != 0 {
                continue;
            }
            for (k, st) in STYLES.iter().enumerate() {
                epochs[d / 25].push(MixRow {
                    text: format!("{st}: {text}"),
                    kind: "synthetic".into(),
                    style: st.to_string(),
                    n_tokens: 40 + ((d * 13 + k * 29) % 200) as u32,
                    cosine: Some(0.8),
                    ..base.clone()
                });
            }
        }
    }
    epochs
}

fn mixture(name: &str, opts: &[(&str, &str)]) -> Mixture {
    let mut v = serde_json::to_value(MixConfig::default()).unwrap();
    for (k, x) in opts {
        v[*k] = serde_json::from_str(x).unwrap_or_else(|_| serde_json::Value::String(x.to_string()));
    }
    let styles: Vec<String> = STYLES.iter().map(|s| s.to_string()).collect();
    Mixture::new(name, serde_json::from_value(v).unwrap(), &styles).unwrap()
}

/// Runs the mix operator over `epochs` with `workers` workers and returns its events. With
/// `watch`, also says whether a shard was written before the input ended.
fn run_mix(epochs: &[Vec<MixRow>], mixtures: Vec<Mixture>, out: &Path, workers: usize) -> (Vec<MixEvent>, bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let location = StoreRegistry::new().resolve(out.to_str().unwrap(), &Default::default()).unwrap();
    let handle = rt.handle().clone();
    let styles = STYLES.iter().map(|s| s.to_string()).collect();
    let config =
        MixStageConfig { mixtures: mixtures.iter().map(|m| (m.name.clone(), m.config.clone())).collect(), styles };
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let errs = errors.clone();
    let epochs = Arc::new(epochs.to_vec());
    let events = Arc::new(Mutex::new(Vec::new()));
    let early = Arc::new(Mutex::new(false));
    let (ev, ea) = (events.clone(), early.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (idx, peers) = (worker.index(), worker.peers());
        let mut input = InputHandle::new();
        let (ev, seen) = (ev.clone(), ev.clone());
        let ctx =
            StageContext { errors: errs.clone(), ..Default::default() }.with_output(location.clone(), handle.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .container::<Vec<MixRow>>()
                .mix(&config, &ctx)
                .inspect(move |e: &MixEvent| ev.lock().unwrap().push(e.clone()));
        });
        for (t, rows) in epochs.iter().enumerate() {
            let mut mine: Vec<MixRow> =
                rows.iter().enumerate().filter(|(i, _)| i % peers == idx).map(|x| x.1.clone()).collect();
            input.send_batch(&mut mine);
            input.advance_to(t as u64 + 1);
            for _ in 0..4 {
                worker.step();
            }
        }
        if idx == 0 {
            *ea.lock().unwrap() = seen.lock().unwrap().iter().any(|e| matches!(e, MixEvent::Shard(_)));
        }
    })
    .unwrap()
    .join()
    .into_iter()
    .for_each(|r| r.unwrap());
    let events = events.lock().unwrap().clone();
    if let Some(m) = errors.lock().unwrap().first() {
        panic!("mix failed: {m}");
    }
    let early = *early.lock().unwrap();
    (events, early)
}

fn summary<'a>(events: &'a [MixEvent], name: &str) -> &'a MixSummary {
    events
        .iter()
        .find_map(|e| match e {
            MixEvent::Done(s) if s.name == name => Some(s),
            _ => None,
        })
        .unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    f.sort();
    f
}

/// One shard read back from Parquet: (kind, style, source, stage, doc_id, chunk_index, epoch, tokens).
type Row = (String, String, String, String, String, u32, u32, u64);

fn read_shard(path: &Path) -> Vec<Row> {
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for b in r {
        let b = b.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (kind, style, source, stage, doc) = (s("kind"), s("style"), s("source"), s("stage"), s("doc_id"));
        let chunk = b.column_by_name("chunk_index").unwrap().as_primitive::<UInt32Type>().clone();
        let epoch = b.column_by_name("epoch").unwrap().as_primitive::<UInt32Type>().clone();
        let tokens = b.column_by_name("tokens").unwrap().as_primitive::<UInt64Type>().clone();
        for i in 0..b.num_rows() {
            rows.push((
                kind.value(i).into(),
                style.value(i).into(),
                source.value(i).into(),
                stage.value(i).into(),
                doc.value(i).into(),
                chunk.value(i),
                epoch.value(i),
                tokens.value(i),
            ));
        }
    }
    rows
}

fn share(rows: &[Row], f: impl Fn(&Row) -> bool) -> f64 {
    let total: u64 = rows.iter().map(|r| r.7).sum();
    rows.iter().filter(|r| f(r)).map(|r| r.7).sum::<u64>() as f64 / total as f64
}

#[test]
fn ratios_hold_in_every_million_token_shard_and_overall() {
    let dir = tempfile::TempDir::new().unwrap();
    let epochs = corpus(6000, 1);
    let m = mixture(
        "wrap",
        &[
            ("styles", "qa:1, medium:2"),
            ("source", "split_part(source_file, '/', 1)"),
            ("sources", "news:0.3, wiki:0.7"),
        ],
    );
    let (events, _) = run_mix(&epochs, vec![m], dir.path(), 2);
    let s = summary(&events, "wrap");
    let shards = files(&dir.path().join("mix/wrap"));
    let all: Vec<Row> = shards.iter().flat_map(|f| read_shard(f)).collect();
    assert!(shards.len() >= 3, "{} shards", shards.len());
    // Targets: real 1/2; medium 2/6, qa 1/6; easy has no weight; news 0.3 of every part.
    let target = [
        (Box::new(|r: &Row| r.0 == "real") as Box<dyn Fn(&Row) -> bool>, 0.5),
        (Box::new(|r: &Row| r.1 == "medium"), 1.0 / 3.0),
        (Box::new(|r: &Row| r.1 == "qa"), 1.0 / 6.0),
        (Box::new(|r: &Row| r.2 == "news"), 0.3),
        (Box::new(|r: &Row| r.2 == "news" && r.1 == "qa"), 0.05),
    ];
    let mut checked = 0;
    for f in &shards {
        let rows = read_shard(f);
        let tokens: u64 = rows.iter().map(|r| r.7).sum();
        if tokens < 1_000_000 {
            continue;
        }
        checked += 1;
        for (i, (pick, want)) in target.iter().enumerate() {
            let got = share(&rows, pick);
            println!("{} tokens={tokens} target#{i} share={got:.5} want={want:.5}", f.display());
            assert!((got - want).abs() <= 0.005, "{}: share {got:.4} vs target {want:.4}", f.display());
        }
    }
    assert!(checked >= 2, "only {checked} shards of 1M tokens");
    for (pick, want) in &target {
        let got = share(&all, pick);
        assert!((got - want).abs() <= 0.005, "overall share {got:.4} vs {want:.4}");
    }
    assert!(all.iter().all(|r| r.1 != "easy"), "a style without weight is left out");
    assert_eq!(
        s.excluded.get("style `easy` has no weight").copied(),
        Some(epochs.iter().flatten().filter(|r| r.style == "easy").count() as u64)
    );
    // Every row is accounted for: offered = written + left out (stop), plus the excluded ones.
    let offered: u64 = s.outcome.iter().map(|o| o.offered_rows).sum();
    let excluded: u64 = s.excluded.values().sum();
    assert_eq!(s.rows_in, epochs.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(s.rows_in, offered + excluded);
    assert_eq!(all.len() as u64, s.rows);
    assert_eq!(s.outcome.iter().map(|o| o.left_out_rows + o.rows).sum::<u64>(), offered);
}

#[test]
fn each_shortfall_policy_on_uneven_input() {
    // Only one document in four is rephrased: the synthetic side is short of 1:1.
    let epochs = corpus(400, 4);
    let real_tokens: u64 = epochs.iter().flatten().filter(|r| r.kind == "real").map(|r| r.n_tokens as u64).sum();
    let syn_tokens: u64 = epochs.iter().flatten().filter(|r| r.kind == "synthetic").map(|r| r.n_tokens as u64).sum();
    assert!(syn_tokens < real_tokens);
    let dir = tempfile::TempDir::new().unwrap();
    let mixes = vec![
        mixture("stop", &[("shortfall", "stop"), ("shard_tokens", "5000")]),
        mixture("repeat", &[("shortfall", "repeat"), ("max_epochs", "2"), ("shard_tokens", "5000")]),
        mixture("report", &[("shortfall", "report"), ("shard_tokens", "5000")]),
    ];
    let (events, _) = run_mix(&epochs, mixes, dir.path(), 1);
    let read = |name: &str| -> Vec<Row> {
        files(&dir.path().join("mix").join(name)).iter().flat_map(|f| read_shard(f)).collect()
    };
    let real_share = |rows: &[Row]| share(rows, |r| r.0 == "real");

    // stop: the shortest style is used up, the other sides are cut to match it.
    let stop = read("stop");
    let s = summary(&events, "stop");
    assert!((real_share(&stop) - 0.5).abs() < 0.002, "{}", real_share(&stop));
    assert!(s.outcome[1..].iter().any(|o| o.left_out_tokens == 0 && o.tokens == o.offered_tokens));
    let real = &s.outcome[0];
    assert_eq!(real.tokens + real.left_out_tokens, real_tokens, "what is cut is reported");
    assert!(real.left_out_tokens > 0);

    // repeat: synthetic rows written twice at most (epoch 0 and 1), with the ratio held.
    let rep = read("repeat");
    let s = summary(&events, "repeat");
    assert!((real_share(&rep) - 0.5).abs() < 0.002, "{}", real_share(&rep));
    assert!(rep.iter().any(|r| r.0 == "synthetic" && r.6 == 1), "second pass marked epoch 1");
    assert!(rep.iter().all(|r| r.6 <= 1));
    let syn = s.outcome.iter().filter(|_| true).skip(1).map(|o| o.tokens).sum::<u64>();
    let repeated = s.outcome.iter().map(|o| o.repeated_tokens).sum::<u64>();
    assert!(syn > syn_tokens && syn <= 2 * syn_tokens && repeated == syn - syn_tokens, "{syn} {repeated}");
    assert!(s.outcome.iter().skip(1).all(|o| o.epochs == 2));

    // report: everything is written, the imbalance is in the summary.
    let all = read("report");
    let s = summary(&events, "report");
    assert_eq!(all.iter().map(|r| r.7).sum::<u64>(), real_tokens + syn_tokens);
    assert!(s.outcome.iter().all(|o| o.left_out_tokens == 0));
    let achieved_real = s.achieved[0];
    assert!(achieved_real > 0.6, "report does not hide the shortfall: real share {achieved_real}");
    // Each style is short of what the real side got, by the tokens the manifest names.
    assert_eq!(s.shortfall_tokens[0], 0);
    for (i, o) in s.outcome.iter().enumerate().skip(1) {
        let want = (s.outcome[0].tokens as f64 / s.leaves[0].weight * s.leaves[i].weight).round() as u64;
        assert!(s.shortfall_tokens[i].abs_diff(want - o.tokens) <= 1, "{:?}", s.shortfall_tokens);
    }
}

#[test]
fn curriculum_stages_are_in_lexical_order_and_documents_stay_whole() {
    let dir = tempfile::TempDir::new().unwrap();
    let epochs = corpus(200, 1);
    let m = mixture(
        "curr",
        &[
            ("stage", "CASE WHEN kind = 'real' THEN 'real' ELSE style END"),
            ("stages", "easy, medium, qa, real"),
            ("unit", "document"),
            ("shard_tokens", "4000"),
        ],
    );
    run_mix(&epochs, vec![m], dir.path(), 2);
    let shards = files(&dir.path().join("mix/curr"));
    let rows: Vec<Row> = shards.iter().flat_map(|f| read_shard(f)).collect();
    let order = ["easy", "medium", "qa", "real"];
    let pos: Vec<usize> = rows.iter().map(|r| order.iter().position(|s| *s == r.3).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] <= w[1]), "shards in lexical order follow the stages");
    assert!(rows.iter().all(|r| r.3 == if r.0 == "real" { "real" } else { r.1.as_str() }));
    // unit = document: a document's chunks of one leaf are adjacent and in order.
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (r.4.clone(), r.1.clone());
        if let Some(&last) = seen.get(&key) {
            assert_eq!(last + 1, i, "chunks of {key:?} are contiguous");
            assert_eq!(rows[last].5 + 1, r.5, "chunks of {key:?} in order");
        }
        seen.insert(key, i);
    }
    let names: Vec<String> = shards.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names[0].starts_with("s001-easy-000000"), "{names:?}");
}

#[test]
fn same_input_and_seed_give_identical_bytes_and_mixtures_share_one_pass() {
    let epochs = corpus(300, 1);
    let mixes = || {
        vec![
            mixture("one_one", &[("shard_tokens", "8000")]),
            mixture("one_two", &[("ratio", "1:2"), ("shard_tokens", "8000")]),
            mixture("synthetic_only", &[("ratio", "0:1"), ("shard_tokens", "8000"), ("format", "jsonl")]),
            mixture("shuffled", &[("shard_tokens", "8000"), ("seed", "9")]),
        ]
    };
    let (a, b) = (tempfile::TempDir::new().unwrap(), tempfile::TempDir::new().unwrap());
    let (ea, _) = run_mix(&epochs, mixes(), a.path(), 2);
    run_mix(&epochs, mixes(), b.path(), 2);
    for name in ["one_one", "one_two", "synthetic_only", "shuffled"] {
        let (fa, fb) = (files(&a.path().join("mix").join(name)), files(&b.path().join("mix").join(name)));
        assert_eq!(fa.len(), fb.len());
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap(), "{} differs between runs", x.display());
        }
    }
    let read = |name: &str| -> Vec<Row> {
        files(&a.path().join("mix").join(name)).iter().flat_map(|f| read_shard(f)).collect()
    };
    assert!((share(&read("one_two"), |r| r.0 == "real") - 1.0 / 3.0).abs() < 0.01);
    assert!(read("one_one").iter().zip(read("shuffled").iter()).any(|(x, y)| x.4 != y.4), "the seed changes the order");
    let syn = summary(&ea, "synthetic_only");
    assert_eq!(syn.outcome[0].tokens, 0);
    assert!(syn.excluded.contains_key("real rows have no weight"));
    let jsonl = files(&a.path().join("mix/synthetic_only"));
    assert!(jsonl.iter().all(|f| f.extension().unwrap() == "jsonl"));
}

#[test]
fn shards_are_written_while_the_input_streams() {
    let dir = tempfile::TempDir::new().unwrap();
    let (events, early) =
        run_mix(&corpus(400, 1), vec![mixture("s", &[("shard_tokens", "3000"), ("styles", "medium")])], dir.path(), 1);
    assert!(early, "a shard was written before the input ended");
    let max_held = summary(&events, "s").max_held_rows;
    let rows_in = summary(&events, "s").rows_in;
    assert!(max_held * 4 < rows_in, "memory held {max_held} of {rows_in} rows");
}

#[test]
fn megatron_shards_round_trip_through_the_library_and_numpy() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = common::tokenizer(dir.path());
    let m = mixture(
        "tok",
        &[("format", "megatron"), ("tokenizer", tok.to_str().unwrap()), ("shard_tokens", "6000"), ("ratio", "1:1")],
    );
    let epochs = corpus(300, 1);
    let (events, _) = run_mix(&epochs, vec![m], &dir.path().join("out"), 2);
    let s = summary(&events, "tok");
    let dirp = dir.path().join("out/mix/tok");
    let texts: BTreeMap<(String, String, String, u32), String> = epochs
        .iter()
        .flatten()
        .map(|r| ((r.doc_id.clone(), r.kind.clone(), r.style.clone(), r.chunk_index), r.text.clone()))
        .collect();
    let tokenizer = wrapflow::operators::testkit::tiny_tokenizer();
    let eos = tokenizer.token_to_id("<|im_end|>").unwrap();
    let mut total = 0u64;
    let mut real = 0u64;
    for idx in files(&dirp).into_iter().filter(|f| f.extension().unwrap() == "idx") {
        let shard =
            TokenShard::parse(&std::fs::read(idx.with_extension("bin")).unwrap(), &std::fs::read(&idx).unwrap())
                .unwrap();
        let meta = read_meta(&PathBuf::from(format!("{}.meta.parquet", idx.with_extension("").display())));
        assert_eq!(meta.len(), shard.docs());
        for (i, (doc, chunk, kind, style, tokens)) in meta.iter().enumerate() {
            let ids = shard.doc(i);
            assert_eq!(ids.len() as u64, *tokens);
            assert_eq!(*ids.last().unwrap(), eos, "EOS after every document");
            let text = &texts[&(doc.clone(), kind.clone(), style.clone(), *chunk)];
            assert_eq!(tokenizer.decode(&ids[..ids.len() - 1], false).unwrap(), *text, "the ids are the row's text");
            total += tokens;
            real += if kind == "real" { *tokens } else { 0 };
        }
    }
    assert_eq!(total, s.tokens);
    assert_eq!(s.eos_id, Some(eos), "the summary names the EOS id the index does not hold");
    assert!((real as f64 / total as f64 - 0.5).abs() < 0.01);

    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = r#"
import glob, sys
import numpy as np, pyarrow.parquet as pq
real = total = 0
eos = int(sys.argv[2])
for idx in sorted(glob.glob(sys.argv[1] + "/*.idx")):
    base = idx[:-4]
    raw = open(idx, "rb").read()
    # Megatron's MMIDIDX layout: header, version, dtype code, counts, lengths, pointers, documents.
    assert raw[:9] == b"MMIDIDX\x00\x00" and int(np.frombuffer(raw, "<u8", 1, 9)[0]) == 1
    dtype = {8: "<u2", 4: "<i4"}[raw[17]]
    seqs, docs = (int(x) for x in np.frombuffer(raw, "<u8", 2, 18))
    lengths = np.frombuffer(raw, "<i4", seqs, 34)
    pointers = np.frombuffer(raw, "<i8", seqs, 34 + 4 * seqs)
    assert docs == seqs + 1 and (np.frombuffer(raw, "<i8", docs, 34 + 12 * seqs) == np.arange(docs)).all()
    assert len(raw) == 34 + 12 * seqs + 8 * docs
    ids = np.memmap(base + ".bin", dtype=dtype, mode="r")
    off = np.concatenate([[0], np.cumsum(lengths)])
    assert (pointers == off[:-1] * ids.itemsize).all() and len(ids) == off[-1]
    assert (ids[off[1:] - 1] == eos).all()
    meta = pq.read_table(base + ".meta.parquet").to_pydict()
    assert (np.diff(off) == np.array(meta["tokens"])).all()
    for k, t in zip(meta["kind"], meta["tokens"]):
        total += t
        real += t if k == "real" else 0
print(real / total)
"#;
    let out =
        std::process::Command::new(python).arg("-c").arg(script).arg(&dirp).arg(eos.to_string()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let share: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((share - 0.5).abs() < 0.01, "numpy reads a real share of {share}");
    assert!((share - real as f64 / total as f64).abs() < 1e-12);
}

fn read_meta(path: &Path) -> Vec<(String, u32, String, String, u64)> {
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (doc, kind, style) = (s("doc_id"), s("kind"), s("style"));
        let chunk = b.column_by_name("chunk_index").unwrap().as_primitive::<UInt32Type>().clone();
        let tokens = b.column_by_name("tokens").unwrap().as_primitive::<UInt64Type>().clone();
        for i in 0..b.num_rows() {
            out.push((
                doc.value(i).into(),
                chunk.value(i),
                kind.value(i).into(),
                style.value(i).into(),
                tokens.value(i),
            ));
        }
    }
    out
}
