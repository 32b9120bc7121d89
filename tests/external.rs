//! Tests against things outside the process: an S3-compatible server on loopback, an
//! independent Parquet reader (pyarrow), spaCy's sentencizer and the `wrapflow` binary itself.
//! `scripts/test.sh` installs the server, pyarrow and spaCy and points `WRAPFLOW_TEST_MOTO` /
//! `WRAPFLOW_TEST_PYTHON` at them.

mod common;
#[path = "external/spacy.rs"]
mod spacy;

use std::process::Command;
use std::time::{Duration, Instant};

use common::s3::*;
use common::*;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_an_s3_compatible_server() {
    let server = S3Server::start();
    server.create_bucket("corpus");
    let store = server.store("corpus");
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    for f in 0..3 {
        let body: String = (f * 10..f * 10 + 10).map(|i| json_line(&format!("s{i}"), &doc_text(i)) + "\n").collect();
        let name = format!("in/part-{f}.jsonl.gz");
        store.put(&StorePath::from(name), PutPayload::from(gzip(body.as_bytes()))).await.unwrap();
    }
    let plan =
        plan_text(&format!("OPTIONS ({})", s3_options(&server.endpoint())), &s3_sink_options(&server.endpoint()))
            + &format!(
                "MIX real WITH (ratio = '1:0', format = 'tokens', tokenizer = '{}', shard_tokens = 500);\n",
                tok.display()
            );
    let tok_s = tok.to_str().unwrap().to_string();
    let m = tokio::task::spawn_blocking(move || {
        run_plan(&plan, &[("input", "s3://corpus/in/"), ("output", "s3://corpus/out"), ("tokenizer", &tok_s)], 2)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((m.counts.read, m.counts.kept, m.counts.rejected), (30, 30, 0));
    assert_eq!(m.inputs[0].files.len(), 3);

    let manifest = store.get(&StorePath::from("out/manifest.json")).await.unwrap().bytes().await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["counts"]["chunks"], m.counts.chunks);
    let mut rows = 0;
    for shard in manifest["chunks"]["shards"].as_array().unwrap() {
        let path = format!("out/{}", shard["path"].as_str().unwrap());
        let bytes = store.get(&StorePath::from(path)).await.unwrap().bytes().await.unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        rows += reader.map(|b| b.unwrap().num_rows() as u64).sum::<u64>();
    }
    assert_eq!(rows, m.counts.chunks);
    // The mixture's token shards are in the bucket, each .idx (written last) with its .bin.
    let mix = &manifest["mixes"][0];
    let mut docs = 0;
    for shard in mix["shards"].as_array().unwrap() {
        let bin = format!("out/{}", shard["path"].as_str().unwrap());
        let idx = bin.replace(".bin", ".idx");
        let get = |p: String| {
            let store = store.clone();
            async move { store.get(&StorePath::from(p)).await.unwrap().bytes().await.unwrap() }
        };
        let t = wrapflow::operators::io::tokens::TokenShard::parse(&get(bin).await, &get(idx).await).unwrap();
        docs += t.docs() as u64;
    }
    assert_eq!(docs, m.counts.chunks, "one document per chunk, all of them");
    assert!(mix["shards"].as_array().unwrap().len() > 1);
}

#[test]
fn unreachable_stores_fail_fast_with_a_clear_message() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let input = dir.path().join("in.jsonl");
    write(&input, (json_line("a", &doc_text(1)) + "\n").as_bytes());
    let t0 = Instant::now();
    // Unreachable output: refused before any input is read.
    let plan = plan_text("", &s3_sink_options(&dead));
    let err = run_plan(
        &plan,
        &[("input", input.to_str().unwrap()), ("output", "s3://nowhere/out"), ("tokenizer", tok.to_str().unwrap())],
        1,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("cannot reach output location s3://nowhere/out"), "{err:#}");
    // Unreachable input.
    let plan = plan_text(&format!("OPTIONS ({})", s3_options(&dead)), "");
    let out = dir.path().join("out");
    let err = run_plan(
        &plan,
        &[("input", "s3://nowhere/in/"), ("output", out.to_str().unwrap()), ("tokenizer", tok.to_str().unwrap())],
        1,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("cannot list s3://nowhere/in/"), "{err:#}");
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
}

#[test]
fn pyarrow_reads_the_output() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in.jsonl");
    let body: String = (0..40).map(|i| json_line(&format!("p{i}"), &doc_text(i)) + "\n").collect();
    write(&input, body.as_bytes());
    let out = dir.path().join("out");
    let m = run_plan(
        &plan_text("", ""),
        &[("input", input.to_str().unwrap()), ("output", out.to_str().unwrap()), ("tokenizer", tok.to_str().unwrap())],
        2,
    )
    .unwrap();
    let script = r#"
import json, sys, glob
import pyarrow.parquet as pq
out = sys.argv[1]
t = pq.read_table(sorted(glob.glob(out + "/chunks/*.parquet")))
m = json.load(open(out + "/manifest.json"))
assert t.num_rows == m["counts"]["chunks"], (t.num_rows, m["counts"])
assert t.schema.field("text").type == "string"
assert sum(t.column("n_tokens").to_pylist()) == m["tokens"]["chunks"]
docs = {}
for d, i, s in zip(t.column("doc_id").to_pylist(), t.column("chunk_index").to_pylist(), t.column("text").to_pylist()):
    docs.setdefault(d, {})[i] = s
print(json.dumps({"rows": t.num_rows, "docs": len(docs), "first": "".join(docs["p0"][k] for k in sorted(docs["p0"]))}))
"#;
    let res = Command::new(tool("WRAPFLOW_TEST_PYTHON")).arg("-c").arg(script).arg(&out).output().unwrap();
    assert!(res.status.success(), "pyarrow: {}", String::from_utf8_lossy(&res.stderr));
    let got: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(got["rows"], m.counts.chunks);
    assert_eq!(got["docs"], 40);
    assert_eq!(got["first"], doc_text(0));
}

fn wrapflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wrapflow")).args(args).output().unwrap()
}

#[test]
fn cli_status_of_a_finished_and_an_unfinished_output() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("job");
    write(&out.join("chunks/part-00000-000000.parquet"), b"x");
    write(&out.join("mix/wrap/s001-all-000000.parquet"), b"yy");
    let res = wrapflow(&["status", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&res.stdout);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(text.contains("no manifest.json yet"), "{text}");
    assert!(text.contains("chunks") && text.contains("mix/wrap"), "{text}");
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in.jsonl");
    write(&input, format!("{}\n", json_line("a", &doc_text(1))).as_bytes());
    let done = dir.path().join("done");
    run_plan(
        &plan_text("", ""),
        &[("input", input.to_str().unwrap()), ("output", done.to_str().unwrap()), ("tokenizer", tok.to_str().unwrap())],
        1,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&wrapflow(&["status", done.to_str().unwrap()]).stdout).to_string();
    assert!(text.contains("finished at") && text.contains("1 read, 1 kept"), "{text}");
}

#[test]
fn cli_check_explain_run_and_errors() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in.jsonl");
    write(&input, (0..5).map(|i| json_line(&format!("c{i}"), &doc_text(i)) + "\n").collect::<String>().as_bytes());
    let plan = dir.path().join("p.sql");
    std::fs::write(&plan, plan_text("", "")).unwrap();
    let out = dir.path().join("out");
    let sets = [
        "--set",
        &format!("input={}", input.display()),
        "--set",
        &format!("output={}", out.display()),
        "--set",
        &format!("tokenizer={}", tok.display()),
    ];
    let p = plan.to_str().unwrap();
    let check = wrapflow(&[&["check", p], &sets[..]].concat());
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let explain = wrapflow(&[&["explain", p], &sets[..]].concat());
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("3. chunk     max_tokens=64") && text.contains("Filter:"), "{text}");
    let run = wrapflow(&[&["run", p, "--workers", "2", "--quiet"], &sets[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("kept"));
    assert!(out.join("manifest.json").exists());

    // A plan error: non-zero exit, file:line:col in the message.
    std::fs::write(&plan, plan_text("", "").replace("CHUNK WITH (max_tokens", "CHUNK WITH (max_tokenz")).unwrap();
    let bad = wrapflow(&[&["check", p], &sets[..]].concat());
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&format!("{p}:7:13: CHUNK: unknown field `max_tokenz`")), "{err}");
    let help = wrapflow(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Example:"));
}

#[test]
fn cli_judge_gives_each_pair_the_plans_verdict_and_its_grounding() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("judge.sql");
    // A plan that rephrases (styles and gates) but has no embedder: the model-free gates judge.
    let tok = dir.path().join("tokenizer.json");
    wrapflow::operators::testkit::write_tiny_tokenizer(&tok).unwrap();
    std::fs::write(
        &plan,
        format!(
            "TOKENIZER '{}';\nCREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION 'x.jsonl';\nINPUT raw;\n\
             CHUNK WITH (max_tokens = 64);\nREPHRASE WITH (model = 'unused', styles = 'medium');\nSINK 'out';",
            tok.display()
        ),
    )
    .unwrap();
    let src = "The council will spend 12 million pounds on 2,000 new homes. The plan is not popular.";
    let pairs = [
        ("ok", "The council plans to build 2,000 new homes, costing 12 million pounds. The plan is not popular."),
        (
            "invented",
            "The council will spend 12 million pounds on 2,000 new homes. Critics said the shoelace method of throwing balls failed.",
        ),
        ("flipped", "The plan is popular, the council said."),
    ];
    let lines: Vec<String> = pairs
        .iter()
        .map(|(id, out)| serde_json::json!({"pair": id, "style": "medium", "source": src, "rewrite": out}).to_string())
        .collect();
    let file = dir.path().join("pairs.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = wrapflow(&["judge", plan.to_str().unwrap(), "--pairs", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[0]["pair"].as_str(), rows[0]["accepted"].as_bool()), (Some("ok"), Some(true)), "{}", rows[0]);
    assert!(rows[0]["grounding"]["coverage"].as_f64().unwrap() >= 0.6, "{}", rows[0]);
    assert_eq!(rows[1]["accepted"], false);
    assert!(rows[1]["reason"].as_str().unwrap().starts_with("coverage: 0.00 of \"Critics said"), "{}", rows[1]);
    assert_eq!(rows[1]["grounding"]["weakest_missing"][2], "shoelace", "{}", rows[1]);
    assert!(rows[2]["reason"].as_str().unwrap().starts_with("polarity: "), "{}", rows[2]);
    // A style the plan lacks is an error that names the line.
    std::fs::write(&file, lines[0].replace("medium", "poetic")).unwrap();
    let out = wrapflow(&["judge", plan.to_str().unwrap(), "--pairs", file.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("pairs.jsonl:1: style \"poetic\""));
    // So is a pair without its rewrite.
    std::fs::write(&file, format!("{}\n{}", lines[0], lines[1].replace("\"rewrite\"", "\"output\""))).unwrap();
    let out = wrapflow(&["judge", plan.to_str().unwrap(), "--pairs", file.to_str().unwrap()]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("pairs.jsonl:2: no string field \"rewrite\"")
    );
}
