//! An output directory a user can trust (issue 16): wrapflow removes only what it wrote, never
//! writes through links or onto its input, refuses a run with other settings, lets one job write
//! at a time, keeps secrets out of every file and stream, accounts for every input object, and
//! says when it stopped.

mod common;
#[path = "output/writers.rs"]
mod writers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use object_store::ObjectStoreExt;
use tempfile::TempDir;
use wrapflow::job::output::ClaimMode;
use wrapflow::job::run::{RunOptions, run};
use wrapflow::plan::Plan;

const BIN: &str = env!("CARGO_BIN_EXE_wrapflow");

/// A corpus of `files` JSONL files of 5 documents each, and the tokenizer.
fn setup(dir: &Path, files: usize) -> (PathBuf, PathBuf) {
    let input = dir.join("in");
    for f in 0..files {
        let body: String = (0..5).map(|k| json_line(&format!("f{f}d{k}"), &doc_text(f * 5 + k)) + "\n").collect();
        write(&input.join(format!("part-{f:02}.jsonl")), body.as_bytes());
    }
    (input, tokenizer(dir))
}

fn sets(input: &Path, output: &Path, tok: &Path) -> Vec<(String, String)> {
    vec![
        ("input".into(), input.display().to_string()),
        ("output".into(), output.display().to_string()),
        ("tokenizer".into(), tok.display().to_string()),
    ]
}

fn run_with(
    text: &str,
    sets: &[(String, String)],
    claim: ClaimMode,
) -> anyhow::Result<wrapflow::report::manifest::Manifest> {
    let plan = Plan::parse("test.sql", text, sets)?;
    run(&plan, &RunOptions { claim, ..Default::default() })
}

fn cli(args: &[&str]) -> Output {
    cli_env(args, &[])
}

/// `cli` with extra environment variables (for `status` on S3, whose settings users give there).
fn cli_env(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(BIN).args(args).env("NO_COLOR", "").envs(env.iter().cloned()).output().unwrap()
}

/// `run PLAN --set k=v ...` as arguments.
fn run_args(plan: &Path, sets: &[(String, String)], extra: &[&str]) -> Vec<String> {
    let mut a = vec!["run".to_string(), plan.display().to_string()];
    for (k, v) in sets {
        a.extend(["--set".into(), format!("{k}={v}")]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_foreign_file_in_the_output_survives_and_the_run_says_what_is_there() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 2);
    let out = dir.path().join("out");
    write(&out.join("chunks/mine.txt"), b"a user's notes");
    let s = sets(&input, &out, &tok);
    let e = format!("{:#}", run_with(&plan_text("", ""), &s, ClaimMode::default()).unwrap_err());
    assert!(e.contains("not empty") && e.contains("chunks/mine.txt") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(out.join("chunks/mine.txt")).unwrap(), b"a user's notes");
    assert!(!out.join("manifest.json").exists(), "nothing written after the refusal");

    // With --force the run writes beside it, and neither a resume nor --restart removes it.
    let force = ClaimMode { force: true, restart: false };
    let m = run_with(&plan_text("", ""), &s, force).unwrap();
    assert!(m.counts.reconciles() && m.counts.chunks > 0);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_wrapflow/owner.json")).unwrap()).unwrap();
    assert_eq!(marker["preexisting"], serde_json::json!(["chunks/mine.txt"]));
    let mut other = s.clone();
    other.push(("max_tokens".into(), "32".into()));
    run_with(&plan_text("", ""), &other, ClaimMode { force: false, restart: true }).unwrap();
    assert_eq!(std::fs::read(out.join("chunks/mine.txt")).unwrap(), b"a user's notes");
}

#[test]
fn links_root_and_the_input_are_refused_as_outputs() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 1);
    let elsewhere = dir.path().join("elsewhere");
    write(&elsewhere.join("keep.parquet"), b"not wrapflow's");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("chunks")).unwrap();
    let e = format!("{:#}", run_with(&plan_text("", ""), &sets(&input, &out, &tok), ClaimMode::default()).unwrap_err());
    assert!(e.contains("symbolic link"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["keep.parquet"], "nothing written or removed through the link");

    for bad in [PathBuf::from("/"), input.clone(), dir.path().to_path_buf()] {
        let e =
            format!("{:#}", run_with(&plan_text("", ""), &sets(&input, &bad, &tok), ClaimMode::default()).unwrap_err());
        assert!(e.contains("refusing to write"), "{}: {e}", bad.display());
    }
    assert!(!Path::new("/manifest.json").exists());
}

#[test]
fn a_rerun_or_resume_with_other_settings_names_the_difference() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 2);
    let out = dir.path().join("out");
    let s = sets(&input, &out, &tok);
    let first = run_with(&plan_text("", ""), &s, ClaimMode::default()).unwrap();
    // The same settings: nothing to do, the same manifest.
    let again = run_with(&plan_text("", ""), &s, ClaimMode::default()).unwrap();
    assert_eq!(first.counts, again.counts);
    let mut other = s.clone();
    other.push(("max_tokens".into(), "20".into()));
    let e = format!("{:#}", run_with(&plan_text("", ""), &other, ClaimMode::default()).unwrap_err());
    assert!(e.contains("parameter `max_tokens` was \"64\", now \"20\"") && e.contains("--restart"), "{e}");
    let moved = dir.path().join("in2");
    std::fs::rename(&input, &moved).unwrap();
    let e = format!("{:#}", run_with(&plan_text("", ""), &sets(&moved, &out, &tok), ClaimMode::default()).unwrap_err());
    assert!(e.contains("parameter `input`"), "{e}");
    std::fs::rename(&moved, &input).unwrap();
    // The same path with other contents (another model's tokenizer) is another run; put back,
    // the same run again.
    let original = std::fs::read(&tok).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&original).unwrap();
    std::fs::write(&tok, serde_json::to_vec(&json).unwrap()).unwrap();
    let e = format!("{:#}", run_with(&plan_text("", ""), &s, ClaimMode::default()).unwrap_err());
    assert!(e.contains(&format!("TOKENIZER ({}) changed", tok.display())) && e.contains("--restart"), "{e}");
    std::fs::write(&tok, &original).unwrap();
    assert_eq!(run_with(&plan_text("", ""), &s, ClaimMode::default()).unwrap().counts, first.counts);
    // --restart replaces the run: every chunk now fits 20 tokens, under a manifest that says so.
    let m = run_with(&plan_text("", ""), &other, ClaimMode { force: false, restart: true }).unwrap();
    assert_eq!(m.plan.params["max_tokens"], "20");
    let rows = read_chunks(&out.join("chunks"));
    assert!(!rows.is_empty() && rows.iter().all(|r| r.3 <= 20), "only 20-token chunks remain");
    assert_eq!(rows.len() as u64, m.counts.chunks);
}

fn sigint(child: &Child) {
    // SAFETY: sending a signal to a child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
}

/// `wrapflow status s3://...` reads the store's settings from the environment, as users give them.
fn status_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn secrets_reach_no_file_and_no_stream() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 2);
    let out = dir.path().join("out");
    let secret = "Sup3rS3cretKeyValue";
    // A credential option on a local table is accepted and unused: the value must still vanish.
    let plan = dir.path().join("plan.sql");
    let text =
        plan_text("OPTIONS ('aws_secret_access_key' '${key}')", "").replace("PARAM input;", "PARAM input; PARAM key;");
    std::fs::write(&plan, &text).unwrap();
    let mut s = sets(&input, &out, &tok);
    s.push(("key".into(), secret.into()));
    let r = cli(&run_args(&plan, &s, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut streams = String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr);
    for args in [vec!["report", out.to_str().unwrap(), "--json"], vec!["status", out.to_str().unwrap()]] {
        let o = cli(&args);
        streams += &(String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr));
    }
    let mut explain = vec!["explain".to_string(), plan.display().to_string()];
    s.iter().for_each(|(k, v)| explain.extend(["--set".into(), format!("{k}={v}")]));
    let o = cli(&explain.iter().map(String::as_str).collect::<Vec<_>>());
    streams += &(String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr));
    assert!(!streams.contains(secret), "{streams}");
    for (f, bytes) in common::crash::files(&out) {
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{f} holds the secret");
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["plan"]["params"]["key"], "***");

    // A password in an endpoint URL, and a short PARAM marked SECRET, in an error: the error
    // names both places, masked.
    // (Credentials given, so that the store asks no instance metadata service for them.)
    let bad = plan_text(
        "OPTIONS ('aws_endpoint' 'http://admin:pa55word@127.0.0.1:1', 'retry_max' '0', \
         'aws_access_key_id' 'test', 'aws_secret_access_key' 'test-key-value')",
        "",
    )
    .replace("PARAM input;", "PARAM input; PARAM token SECRET DEFAULT 'tk42';")
    .replace("LOCATION '${input}'", "LOCATION 's3://b/${token}/x'");
    std::fs::write(&plan, bad).unwrap();
    let s = sets(&input, &dir.path().join("out2"), &tok);
    let r = cli(&run_args(&plan, &s, &["-q"]).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(!err.contains("pa55word") && !err.contains("tk42"), "{err}");
    assert!(err.contains("s3://b/***/x"), "the error does not name the location: {err}");
    assert!(err.contains("http://***@127.0.0.1:1"), "the error does not name the endpoint: {err}");
}

#[test]
fn every_input_object_is_read_rejected_or_listed_as_skipped() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in");
    let line = |id: &str, i: usize| json_line(id, &doc_text(i)) + "\n";
    // A byte order mark, and an upper-case extension: both read.
    write(&input.join("a.JSONL"), format!("\u{feff}{}{}", line("bom", 1), line("nulled", 2)).as_bytes());
    for skipped in
        ["b.jsonl.bz2", "notes", "_x/c.jsonl", ".y/d.jsonl", "run/_wrapflow/state/e.jsonl", "run/manifest.json"]
    {
        write(&input.join(skipped), line("never", 3).as_bytes());
    }
    let out = dir.path().join("out");
    // The plan's SQL sets one text to NULL: a reject with its reason, not a kept row without chunks.
    let text = plan_text("", "").replace(
        "CREATE VIEW docs AS SELECT * FROM raw WHERE word_count(text) >= 5;",
        "CREATE VIEW docs AS SELECT id, CASE WHEN id = 'nulled' THEN NULL ELSE text END AS text, source_file, source_line FROM raw;",
    );
    let m = run_with(&text, &sets(&input, &out, &tok), ClaimMode::default()).unwrap();
    assert_eq!((m.counts.read, m.counts.kept, m.counts.rejected), (2, 1, 1), "{:?}", m.counts);
    assert!(m.counts.reconciles());
    let rejects = read_rejects(&out.join("rejects"));
    assert!(rejects[0]["reason"].as_str().unwrap().contains("empty text"), "{rejects:?}");
    // `run/` holds a wrapflow output: listed once, as a folder, with none of its objects.
    assert_eq!(m.counts.skipped_objects, 5);
    let skipped: Vec<(String, String)> = m.inputs[0]
        .skipped
        .iter()
        .map(|s| (s.path.trim_end_matches('/').rsplit('/').next().unwrap().to_string(), s.reason.clone()))
        .collect();
    let paths: Vec<&str> = m.inputs[0].skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, [".y/d.jsonl", "_x/c.jsonl", "b.jsonl.bz2", "notes", "run/"], "relative to the input");
    let reason = |name: &str| skipped.iter().find(|s| s.0 == name).map(|s| s.1.clone()).unwrap_or_default();
    assert!(reason("b.jsonl.bz2").contains("unknown format"), "{skipped:?}");
    assert!(reason("notes").contains("unknown format"));
    assert!(reason("c.jsonl").contains("_x/") && reason("d.jsonl").contains(".y/"), "{skipped:?}");
    assert!(reason("run").contains("wrapflow output"), "{skipped:?}");

    // An int64 Parquet text column is rejected as a JSON number is, row by row.
    let pq = dir.path().join("pq");
    std::fs::create_dir_all(&pq).unwrap();
    let batch = arrow::record_batch::RecordBatch::try_from_iter([(
        "text",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(pq.join("n.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let text = plan_text("", "").replace("STORED AS JSONL", "STORED AS PARQUET");
    let m = run_with(&text, &sets(&pq, &dir.path().join("out-pq"), &tok), ClaimMode::default()).unwrap();
    assert_eq!((m.counts.read, m.counts.rejected, m.counts.kept), (3, 3, 0));
    assert!(m.rejects.by_reason.keys().any(|r| r.contains("not a string")), "{:?}", m.rejects.by_reason);

    // Every Arrow string type is text (a pandas Categorical writes a dictionary); a file without
    // the text column is a reject per row.
    use arrow::array::{ArrayRef, DictionaryArray, LargeStringArray, StringArray};
    use arrow::datatypes::Int32Type;
    let texts: Vec<String> = (0..3).map(doc_text).collect();
    let strs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dict: DictionaryArray<Int32Type> = strs.iter().copied().collect();
    let columns: [(&str, &str, ArrayRef); 3] = [
        ("dict", "text", std::sync::Arc::new(dict)),
        ("large", "text", std::sync::Arc::new(LargeStringArray::from(strs.clone()))),
        ("other", "body", std::sync::Arc::new(StringArray::from(strs.clone()))),
    ];
    for (name, column, array) in columns {
        let dir_in = dir.path().join(format!("pq-{name}"));
        std::fs::create_dir_all(&dir_in).unwrap();
        let batch = arrow::record_batch::RecordBatch::try_from_iter([(column, array)]).unwrap();
        let file = std::fs::File::create(dir_in.join(format!("{name}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let text = plan_text("", "").replace("STORED AS JSONL", "STORED AS PARQUET").replace(
            "CREATE VIEW docs AS SELECT * FROM raw WHERE word_count(text) >= 5;",
            "CREATE VIEW docs AS SELECT * FROM raw;",
        );
        let out = dir.path().join(format!("out-{name}"));
        let m = run_with(&text, &sets(&dir_in, &out, &tok), ClaimMode::default()).unwrap();
        let c = &m.counts;
        assert!(c.reconciles(), "{name}: {c:?}");
        if column == "text" {
            assert_eq!((c.read, c.kept, c.rejected), (3, 3, 0), "{name}: {c:?} {:?}", m.rejects.by_reason);
            let mut docs: std::collections::BTreeMap<String, String> = Default::default();
            for (doc, _, text, ..) in read_chunks(&out.join("chunks")) {
                docs.entry(doc).or_default().push_str(&text);
            }
            let (mut kept, mut want): (Vec<String>, Vec<String>) = (docs.into_values().collect(), texts.clone());
            kept.sort();
            want.sort();
            assert_eq!(kept, want, "{name}: every text whole");
        } else {
            assert_eq!((c.read, c.kept, c.rejected), (3, 0, 3), "{name}: {c:?}");
            assert!(m.rejects.by_reason.keys().any(|r| r.contains("no text column")), "{:?}", m.rejects.by_reason);
        }
    }
}

#[test]
fn limit_cut_rows_are_counted_apart_from_filtered_rows() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let input = dir.path().join("in");
    // 30 documents, every third too short for the filter.
    let body: String = (0..30)
        .map(|i| json_line(&format!("d{i}"), &if i % 3 == 0 { "too short".into() } else { doc_text(i) }) + "\n")
        .collect();
    write(&input.join("a.jsonl"), body.as_bytes());
    let text = plan_text("", "").replace("word_count(text) >= 5;", "word_count(text) >= 5 LIMIT 4;");
    let m = run_with(&text, &sets(&input, &dir.path().join("out"), &tok), ClaimMode::default()).unwrap();
    let c = &m.counts;
    assert_eq!((c.read, c.kept), (30, 4), "{c:?}");
    // The four kept come from the first six rows: two of those were filtered; the rest never
    // reached the filter or were cut by the limit.
    assert!(c.filtered <= 10 && c.filtered >= 2, "{c:?}");
    assert_eq!(c.limited, 30 - 4 - c.filtered, "{c:?}");
    assert!(c.limited >= 16, "{c:?}");
    assert!(c.reconciles());
}

#[test]
fn check_refuses_what_would_fail_or_mislead_later() {
    let dir = TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let s = sets(Path::new("in"), Path::new("out"), &tok);
    let parse = |text: &str| Plan::parse("p.sql", text, &s);
    let wrap =
        |opts: &str| format!("{}REPHRASE WITH (model = '{}/none', {opts});\n", plan_text("", ""), dir.path().display());
    let cases: Vec<(String, &str)> = vec![
        (wrap("temperature = -1"), "temperature -1"),
        (wrap("top_p = 7"), "top_p 7"),
        (plan_text("", "").replace("shard_rows = 50", "shard_rows = 0"), "shard_rows"),
        (plan_text("", "") + "COPY raw TO 'x.csv';\n", "unsupported statement COPY"),
        (plan_text("", "") + "PARAM input;\n", "PARAM input appears twice"),
    ];
    for (text, want) in &cases {
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains(want) && e.pos.is_some(), "{want}: {e}");
    }
    let open = plan_text("", "").replace("SINK '${output}'", "SINK '${output}");
    let e = parse(&open).unwrap_err();
    assert_eq!(e.pos.map(|p| (p.line, p.col)), Some((8, 6)), "points at the quote that never closes: {e}");
    let mut empty = s.clone();
    empty[1].1 = String::new();
    let e = Plan::parse("p.sql", &plan_text("", ""), &empty).unwrap_err();
    assert!(e.to_string().contains("output location is empty") && e.pos.is_some(), "{e}");
    // A missing model directory and a provider this build lacks: `check` reads no data but knows.
    let e = wrapflow::job::run::check(&parse(&wrap("temperature = 0")).unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("is not a directory"), "{e:#}");
    let model = dir.path().join("none");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.onnx"), b"").unwrap();
    std::fs::copy(&tok, model.join("tokenizer.json")).unwrap();
    if !cfg!(feature = "cuda") {
        let e = wrapflow::job::run::check(&parse(&wrap("provider = 'cuda'")).unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("--features cuda"), "{e:#}");
    }
    // Styles whose meaning and support gates would run without an embedder (every gate is the
    // default) are refused; listing the gates without them is accepted.
    let e = wrapflow::job::run::check(&parse(&wrap("styles = 'easy,qa'")).unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("style `easy` has the meaning and support gates"), "{e:#}");
    // A mixture's name is one folder under mix/, never a path out of it.
    let escape = plan_text("", "") + "MIX \"../../x\" WITH (ratio = '1:0');\n";
    let e = wrapflow::job::run::check(&parse(&escape).unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("must be letters, digits"), "{e:#}");
    let listed = wrap("styles = 'easy'").replace("REPHRASE", "STYLE easy WITH (gates = 'numbers,copy');\nREPHRASE");
    wrapflow::job::run::check(&parse(&listed).unwrap()).unwrap();
    // A bad value from --set names its parameter.
    let bad = plan_text("", "").replace("word_count(text) >= 5", "word_count(text) >= ${min_words}");
    let mut with = s.clone();
    with.push(("min_words".into(), "abc".into()));
    let p = Plan::parse("p.sql", &format!("PARAM min_words DEFAULT 5;\n{bad}"), &with).unwrap();
    let e = format!("{:#}", wrapflow::job::run::check(&p).unwrap_err());
    assert!(e.contains("min_words") && e.contains("abc"), "{e}");
    // A value outside quotes is one number or word: SQL in it is refused, never run.
    let mut with = s.clone();
    with.push(("min_words".into(), "5 OR length(text) > 0".into()));
    let e = Plan::parse("p.sql", &format!("PARAM min_words DEFAULT 5;\n{bad}"), &with).expect_err("refused");
    assert!(e.to_string().contains("parameter `min_words` stands outside quotes"), "{e}");
    // An output a job has taken (its marker) but written nothing else to.
    let taken = dir.path().join("taken");
    write(&taken.join("_wrapflow/owner.json"), b"{}");
    let text = String::from_utf8_lossy(&cli(&["status", taken.to_str().unwrap()]).stdout).to_string();
    assert!(text.contains("a job has taken the output, and written no shard or checkpoint yet"), "{text}");
    // A corrupt manifest is named.
    let out = dir.path().join("corrupt");
    write(&out.join("manifest.json"), b"{ not json");
    let e = format!("{:#}", wrapflow::report::text::load(out.to_str().unwrap()).unwrap_err());
    assert!(e.contains("manifest.json"), "{e}");
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_worker_counts_are_checked() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 1);
    let plan = dir.path().join("plan.sql");
    std::fs::write(&plan, plan_text("", "")).unwrap();
    let s = sets(&input, &dir.path().join("out"), &tok);
    let run = |extra: &[&str]| {
        let out = Command::new(BIN).args(run_args(&plan, &s, extra)).env_remove("NO_COLOR").output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let many = (std::thread::available_parallelism().unwrap().get() + 1).to_string();
    let (ok, err) = run(&["--workers", &many]);
    assert!(ok, "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a redirected log: {err:?}");
    assert!(err.contains("more than the") && err.contains("cores"), "{err}");
    let (ok, err) = run(&["--workers", "0"]);
    assert!(!ok && err.contains("--workers 0"), "{err}");
    let (ok, err) = run(&["--follow", "--poll", "0s"]);
    assert!(!ok && err.contains("--poll"), "{err}");
}

#[test]
fn progress_counts_bytes_against_the_listed_input_and_prompt_errors_say_where() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 3);
    // Enough bytes that the MB figures are not 0.0.
    let big: String = (0..600).map(|i| json_line(&format!("big{i}"), &doc_text(100 + i)) + "\n").collect();
    write(&input.join("part-99.jsonl"), big.as_bytes());
    let plan = dir.path().join("plan.sql");
    std::fs::write(&plan, plan_text("", "")).unwrap();
    let total: u64 = std::fs::read_dir(&input).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let job = Command::new(BIN)
        .args(run_args(&plan, &sets(&input, &dir.path().join("out"), &tok), &["--follow", "--poll", "100ms"]))
        .env("WRAPFLOW_PROGRESS_S", "0.3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&job);
    let out = job.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(total > 500_000);
    let want = format!("{:.1} MB read of {:.1} MB", total as f64 / 1e6, total as f64 / 1e6);
    assert!(err.lines().any(|l| l.contains("progress: ") && l.contains(&want)), "{want}: {err}");

    // A malformed line of a prompts file is named by file and line.
    let model = dir.path().join("tiny");
    wrapflow::operators::model::tiny::write_tiny_model(
        &model,
        1,
        wrapflow::operators::model::import::WeightFormat::Fp32,
        false,
    )
    .unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"Hello\"}\n\n{\"text\": \"no prompt\"}\n").unwrap();
    let o = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--max-new",
        "2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("prompts.jsonl:3"), "{err}");
}
