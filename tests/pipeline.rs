//! End-to-end runs of plans through the whole dataflow on data made here.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use tempfile::TempDir;

fn sets<'a>(dir: &'a TempDir, input: &'a str, output: &'a str, tok: &'a str) -> Vec<(&'a str, &'a str)> {
    let _ = dir;
    vec![("input", input), ("output", output), ("tokenizer", tok)]
}

/// Checks that the chunks of every document concatenate back to it and respect the bound.
fn check_chunks(out: &std::path::Path, docs: &BTreeMap<String, String>, max_tokens: u32) -> usize {
    let tok = wrapflow::operators::testkit::tiny_tokenizer();
    let rows = read_chunks(&out.join("chunks"));
    let mut by_doc: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in rows {
        assert!(r.3 <= max_tokens, "chunk of {} tokens > {max_tokens}", r.3);
        assert!(r.3 > 0);
        assert_eq!(tok.encode(r.2.as_str(), false).unwrap().len(), r.3 as usize, "n_tokens is the count alone");
        by_doc.entry(r.0.clone()).or_default().push(r);
    }
    for (id, mut chunks) in by_doc.clone() {
        chunks.sort_by_key(|c| c.1);
        let text: String = chunks.iter().map(|c| c.2.as_str()).collect();
        assert_eq!(Some(&text), docs.get(&id), "chunks of {id} concatenate to the document");
        let mut pos = 0;
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!((c.1 as usize, c.4), (i, pos), "indexes and byte ranges are contiguous");
            pos = c.5;
        }
    }
    by_doc.len()
}

#[test]
fn counts_reconcile_on_every_kind_of_bad_record() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in");
    let mut docs = BTreeMap::new();
    let mut a = String::new();
    for i in 0..10 {
        a += &json_line(&format!("d{i}"), &doc_text(i));
        a.push('\n');
        docs.insert(format!("d{i}"), doc_text(i));
    }
    let mut a = a.into_bytes();
    a.extend_from_slice(b"{\"id\": \"broken\", \"text\": \n"); // line 11: malformed JSON
    a.extend_from_slice(b"{\"text\": \"bad \xc3\x28 bytes\"}\n"); // 12: invalid UTF-8
    a.extend_from_slice(b"{\"text\": \"a \\u0000 b c d e\"}\n"); // 13: NUL
    a.extend_from_slice(b"{\"text\": \"\"}\n"); // 14: empty text
    a.extend_from_slice(b"{\"title\": \"no text\"}\n"); // 15: missing text field
    a.extend_from_slice(b"\n"); // blank line: not a record
    a.extend_from_slice(format!("{}\n", json_line("short", "too short")).as_bytes()); // 17: filtered
    a.extend_from_slice(format!("{}\n", json_line("copy0", &doc_text(0))).as_bytes()); // 18: duplicate
    write(&input.join("a.jsonl"), &a);

    let mut b = String::new();
    for i in 10..15 {
        b += &json_line(&format!("d{i}"), &doc_text(i));
        b.push('\n');
        docs.insert(format!("d{i}"), doc_text(i));
    }
    // Which copy of a duplicate survives depends on which worker gets there first: both ids
    // map to the same text, and exactly one of each pair must remain.
    docs.insert("copy0".into(), doc_text(0));
    docs.insert("copy3".into(), doc_text(3));
    b += &json_line("copy3", &doc_text(3));
    b.push('\n');
    let mut b = b.into_bytes();
    // A 50 MB single line: over the default 16 MiB record limit.
    b.extend_from_slice(b"{\"text\": \"");
    b.extend(std::iter::repeat_n(b'y', 50 << 20));
    b.extend_from_slice(b"\"}\n");
    write(&input.join("b.jsonl.gz"), &gzip(&b));

    let mut c = String::new();
    for i in 15..20 {
        c += &json_line(&format!("d{i}"), &doc_text(i));
        c.push('\n');
        docs.insert(format!("d{i}"), doc_text(i));
    }
    write(&input.join("sub/c.jsonl.zst"), &zstd(c.as_bytes()));
    // A file that cannot be read: gzip by name, garbage inside.
    write(&input.join("d.jsonl.gz"), b"this is not gzip data");
    write(&input.join("notes.csv"), b"ignored: not a JSONL file");

    let out = dir.path().join("out");
    let m = run_plan(
        &plan_text("", ""),
        &sets(&dir, input.to_str().unwrap(), out.to_str().unwrap(), tok.to_str().unwrap()),
        2,
    )
    .unwrap();
    let c = &m.counts;
    assert!(c.reconciles(), "{c:?}");
    // 17 records in a (the blank line is none), 7 in b, 5 in c, 1 unreadable file.
    assert_eq!((c.read, c.rejected, c.filtered, c.duplicates, c.kept), (30, 7, 1, 2, 20), "{c:?}");
    assert_eq!(c.chunks as usize, read_chunks(&out.join("chunks")).len());
    assert_eq!(check_chunks(&out, &docs, 64), 20);

    let rejects = read_rejects(&out.join("rejects"));
    assert_eq!(rejects.len(), 7);
    let got: BTreeSet<(String, u64, String)> = rejects
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap();
            (
                r["source_file"].as_str().unwrap().to_string(),
                r["source_line"].as_u64().unwrap(),
                wrapflow::operators::Reject { reason: reason.into(), ..Default::default() }.class().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, u64, String)> = [
        ("a.jsonl", 11, "malformed JSON"),
        ("a.jsonl", 12, "invalid UTF-8"),
        ("a.jsonl", 13, "text contains NUL bytes"),
        ("a.jsonl", 14, "empty text"),
        ("a.jsonl", 15, "missing text field \"text\""),
        ("b.jsonl.gz", 7, "record too long"),
        ("d.jsonl.gz", 1, "read error"),
    ]
    .iter()
    .map(|(f, l, r)| (f.to_string(), *l, r.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(m.rejects.by_reason.values().sum::<u64>(), 7);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["counts"]["read"], 30);
    assert!(manifest["plan"]["hash"].as_str().unwrap().starts_with("blake3:"));
    assert!(manifest["versions"]["datafusion"].is_string());
    let files: Vec<&str> =
        manifest["inputs"][0]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, vec!["a.jsonl", "b.jsonl.gz", "d.jsonl.gz", "sub/c.jsonl.zst"]);
}

#[test]
fn dedup_is_global_across_files_and_workers() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in");
    let lines =
        |r: std::ops::Range<usize>| r.map(|i| json_line(&format!("x{i}"), &doc_text(i)) + "\n").collect::<String>();
    write(&input.join("1.jsonl"), lines(0..30).as_bytes());
    write(&input.join("2.jsonl"), lines(15..45).as_bytes());
    let mut texts = Vec::new();
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        let m = run_plan(
            &plan_text("", ""),
            &sets(&dir, input.to_str().unwrap(), out.to_str().unwrap(), tok.to_str().unwrap()),
            workers,
        )
        .unwrap();
        assert_eq!((m.counts.read, m.counts.duplicates, m.counts.kept), (60, 15, 45), "{workers} workers");
        let mut t: Vec<String> = read_chunks(&out.join("chunks")).into_iter().map(|r| r.2).collect();
        t.sort();
        texts.push(t);
    }
    assert_eq!(texts[0], texts[1], "1 and 2 workers write the same chunks");
}

#[test]
fn a_document_stage_named_by_the_plan_runs_before_chunking() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in.jsonl");
    let messy: Vec<String> = (0..6).map(|i| doc_text(i).replace(". ", ".   \n\n\n\t")).collect();
    write(
        &input,
        messy.iter().enumerate().map(|(i, t)| json_line(&format!("d{i}"), t) + "\n").collect::<String>().as_bytes(),
    );
    let out = dir.path().join("out");
    let plan = plan_text("", "").replace("CHUNK WITH", "STAGE clean_whitespace;\nCHUNK WITH");
    let m = run_plan(&plan, &sets(&dir, input.to_str().unwrap(), out.to_str().unwrap(), tok.to_str().unwrap()), 2);
    assert_eq!(m.unwrap().counts.kept, 6);
    let cfg = wrapflow::operators::stages::clean::CleanConfig::default();
    let cleaned: BTreeMap<String, String> = messy
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("d{i}"), wrapflow::operators::stages::clean::clean(t, &cfg)))
        .collect();
    assert!(cleaned.values().all(|t| !t.contains("\n\n\n") && !t.contains('\t')));
    assert_eq!(check_chunks(&out, &cleaned, 64), 6, "the chunks are those of the cleaned documents");
}

#[test]
fn chunk_invariants_hold_on_adversarial_documents() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in.jsonl");
    let docs: BTreeMap<String, String> = [
        ("nospace", "x".repeat(3000)),
        ("cjk", "我们今天讨论新的预算。学校和道路都需要钱！".repeat(30)),
        ("emoji", "🌍👩‍👩‍👧‍👦🎉 ".repeat(100)),
        ("huge_word", format!("{} {} {}", doc_text(1), "ab".repeat(2000), doc_text(2))),
        ("whitespace", format!("{}\n\n\n\t  \n{}", doc_text(3), doc_text(4))),
        ("mixed", format!("{}😀 Ünïcödé ٱلْعَرَبِيَّة {}", doc_text(5), "z".repeat(500))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let body: String = docs.iter().map(|(k, v)| json_line(k, v) + "\n").collect();
    write(&input, body.as_bytes());
    let plan = plan_text("", "").replace("WHERE word_count(text) >= 5", "");
    let out = dir.path().join("out");
    let m = run_plan(
        &plan,
        &[
            ("input", input.to_str().unwrap()),
            ("output", out.to_str().unwrap()),
            ("tokenizer", tok.to_str().unwrap()),
            ("max_tokens", "20"),
        ],
        1,
    )
    .unwrap();
    assert_eq!(m.counts.kept, docs.len() as u64);
    assert_eq!(check_chunks(&out, &docs, 20), docs.len());
    assert!(m.tokens.max_per_chunk <= 20);
}

#[test]
fn parquet_and_text_sources_with_configurable_columns() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Int64, false),
        Field::new("body", DataType::Utf8, true),
        Field::new("lang", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![Some(doc_text(1)), None, Some(doc_text(3)), Some("   ".into())])),
            Arc::new(StringArray::from(vec![Some("en"), Some("en"), Some("fr"), None])),
        ],
    )
    .unwrap();
    let pq = dir.path().join("pq/part-0.parquet");
    std::fs::create_dir_all(pq.parent().unwrap()).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let plan = format!(
        "TOKENIZER '{}';\n\
         CREATE EXTERNAL TABLE raw (lang VARCHAR) STORED AS PARQUET LOCATION '{}' OPTIONS ('text_column' 'body', 'id_column' 'doc_id');\n\
         SELECT * FROM raw WHERE lang = 'en';\n\
         CHUNK WITH (max_tokens = 64);\nSINK '{}';",
        tok.display(),
        dir.path().join("pq").display(),
        dir.path().join("out_pq").display()
    );
    let m = run_plan(&plan, &[], 1).unwrap();
    assert_eq!((m.counts.read, m.counts.rejected, m.counts.filtered, m.counts.kept), (4, 2, 1, 1), "{:?}", m.counts);
    let rows = read_chunks(&dir.path().join("out_pq/chunks"));
    assert!(rows.iter().all(|r| r.0 == "1"), "ids come from doc_id");
    let rejects = read_rejects(&dir.path().join("out_pq/rejects"));
    let lines: BTreeSet<u64> = rejects.iter().map(|r| r["source_line"].as_u64().unwrap()).collect();
    assert_eq!(lines, BTreeSet::from([2, 4]), "row numbers are 1-based");

    // A directory of plain-text documents, one per file.
    for i in 0..3 {
        write(&dir.path().join(format!("txt/{i}.txt")), doc_text(i).as_bytes());
    }
    write(&dir.path().join("txt/bad.txt"), b"\xff\xfe not utf8");
    let plan = format!(
        "TOKENIZER '{}'; CREATE EXTERNAL TABLE raw STORED AS TEXT LOCATION '{}'; INPUT raw; \
         CHUNK WITH (max_tokens = 64); SINK '{}' WITH (format = 'jsonl');",
        tok.display(),
        dir.path().join("txt").display(),
        dir.path().join("out_txt").display()
    );
    let m = run_plan(&plan, &[], 2).unwrap();
    assert_eq!((m.counts.read, m.counts.rejected, m.counts.kept), (4, 1, 3));
    let shard = std::fs::read_dir(dir.path().join("out_txt/chunks")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(shard.extension().unwrap(), "jsonl");
}

#[test]
fn missing_input_and_bad_sql_fail_with_clear_errors() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let missing = dir.path().join("nothing-here");
    let out = dir.path().join("out");
    let err = run_plan(
        &plan_text("", ""),
        &sets(&dir, missing.to_str().unwrap(), out.to_str().unwrap(), tok.to_str().unwrap()),
        1,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("no Jsonl input files at"), "{err:#}");

    let bad = plan_text("", "").replace("word_count(text) >= 5", "word_count(txet) >= 5");
    let err = run_plan(&bad, &sets(&dir, missing.to_str().unwrap(), out.to_str().unwrap(), tok.to_str().unwrap()), 1)
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with("test.sql:4:1: "), "{msg}");
    assert!(msg.contains("txet"), "{msg}");
}

/// Pseudo-random text of `n` words from a 3,000-word vocabulary (no shared phrases by accident).
#[test]
fn near_duplicates_are_dropped_globally_one_kept_per_cluster() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    // 40 originals; 20 of them get 3 variants each with 1%, 2% and 3% of the words replaced
    // (word 3-gram Jaccard ≥ 0.8; with 20 bands × 5 rows each is caught with p > 0.9999).
    let mut lines = [String::new(), String::new()];
    let mut cluster_of = BTreeMap::new();
    for d in 0..40u64 {
        let base = random_words(d + 1, 300);
        lines[(d % 2) as usize] += &format!("{}\n", json_line(&format!("o{d}"), &base.join(" ")));
        cluster_of.insert(format!("o{d}"), d);
        if d % 2 == 0 {
            for (v, pct) in [1usize, 2, 3].iter().enumerate() {
                let mut w = base.clone();
                for k in 0..300 * pct / 100 {
                    let at = (k * 97 + v * 13) % 300;
                    w[at] = format!("edit{v}x{k}");
                }
                let id = format!("o{d}v{v}");
                // Variants go to the other file, so another worker reads them.
                lines[((d + 1) % 2) as usize] += &format!("{}\n", json_line(&id, &w.join(" ")));
                cluster_of.insert(id, d);
            }
        }
    }
    for (i, l) in lines.iter().enumerate() {
        write(&dir.path().join(format!("in/part-{i}.jsonl")), l.as_bytes());
    }
    let mut kept_sets = Vec::new();
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        let plan = plan_text("", "")
            .replace("DEDUP ON text;", "DEDUP ON text;\nNEARDUP WITH (ngram = 3, bands = 20, rows = 5);");
        let m = run_plan(
            &plan,
            &[
                ("input", dir.path().join("in").to_str().unwrap()),
                ("output", out.to_str().unwrap()),
                ("tokenizer", tok.to_str().unwrap()),
            ],
            workers,
        )
        .unwrap();
        assert!(m.counts.reconciles(), "{:?}", m.counts);
        assert_eq!(m.counts.near_duplicates, 60, "{:?}", m.counts);
        assert_eq!(m.counts.kept, 40);
        let kept: BTreeSet<String> = read_chunks(&out.join("chunks")).into_iter().map(|c| c.0).collect();
        let clusters: BTreeSet<u64> = kept.iter().map(|id| cluster_of[id]).collect();
        assert_eq!(clusters.len(), 40, "one document kept per cluster");
        kept_sets.push(kept);
    }
    assert_eq!(kept_sets[0], kept_sets[1], "the same documents are kept with 1 and 2 workers");
}
