//! Crash-and-resume harness: runs the `wrapflow` binary, kills it (an injected abort at a named
//! point, or SIGKILL after a delay), resumes until it finishes, and compares outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wrapflow::operators::model::encoders::bert::{MAX_SEQ, import_embedder};
use wrapflow::operators::model::import::WeightFormat;
use wrapflow::operators::model::tiny::write_tiny_model;

/// A model, an embedder and a plan that rephrases, dedups, mixes (Parquet and token shards).
pub fn wrap_plan(dir: &Path, input: &str, output: &str, source_options: &str, sink_options: &str) -> PathBuf {
    let model = dir.join("tiny-llama");
    write_tiny_model(&model, 7, WeightFormat::Fp32, false).unwrap();
    let embedder = dir.join("minilm");
    let src = std::env::var("WRAPFLOW_TEST_MINILM").expect("WRAPFLOW_TEST_MINILM is not set: run scripts/test.sh");
    import_embedder(Path::new(&src), &embedder, MAX_SEQ).unwrap();
    let plan = format!(
        "PARAM output;\n\
         TOKENIZER '{model}/tokenizer.json';\n\
         CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '{input}' {source_options};\n\
         INPUT raw;\n\
         DEDUP ON text;\n\
         CHUNK WITH (max_tokens = 48);\n\
         STYLE echo WITH (system = 'Repeat the text.', user = '<text>\n{{chunk}}\n</text>', max_new_tokens = 10, gates = 'empty');\n\
         STYLE qa WITH (rate = 0.5, max_new_tokens = 8);\n\
         REPHRASE WITH (model = '{model}', styles = 'echo,qa', batch_size = 4, seed = 3, temperature = 0.8, top_k = 20, journal_rows = 2);\n\
         GATES WITH (embedder = '{embedder}', min_cosine = 0.2);\n\
         SINK '{output}' WITH (shard_rows = 7{sink_options});\n\
         MIX wrap WITH (styles = 'echo', shard_tokens = 200);\n\
         MIX tok WITH (format = 'tokens', tokenizer = '{model}/tokenizer.json', shortfall = 'report', unit = 'document', shard_tokens = 300);\n",
        model = model.display(),
        embedder = embedder.display(),
    );
    let path = dir.join("plan.sql");
    std::fs::write(&path, plan).unwrap();
    path
}

/// Input file `f`: 4 documents; file 3 also repeats a document of file 0 and has a broken line.
pub fn input_file(f: usize) -> Vec<u8> {
    let mut lines: Vec<String> =
        (0..4).map(|i| super::json_line(&format!("f{f}d{i}"), &super::doc_text(f * 10 + i))).collect();
    if f == 3 {
        lines.push(super::json_line("again", &super::doc_text(1)));
        lines.push("{not json".into());
    }
    lines.join("\n").into_bytes()
}

/// Writes input files `from..from + n` into `dir`.
pub fn write_inputs(dir: &Path, from: usize, n: usize) {
    for f in from..from + n {
        super::write(&dir.join(format!("part-{f:03}.jsonl")), &input_file(f));
    }
}

/// How one attempt is ended.
#[derive(Clone, Debug)]
pub enum Kill {
    /// `WRAPFLOW_FAILPOINT=point:n`: abort the `n`-th time the point is passed.
    At(&'static str, u64),
    /// SIGKILL after this long.
    After(Duration),
}

/// What an attempt did.
#[derive(Debug)]
pub struct Attempt {
    pub kill: Kill,
    pub crashed: bool,
    pub stderr: String,
}

pub fn wrapflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wrapflow"))
}

/// One attempt of `wrapflow run PLAN -q ARGS`, ended by `kill` unless it finishes first.
pub fn attempt(plan: &Path, args: &[&str], kill: &Kill) -> Attempt {
    let mut cmd = wrapflow();
    cmd.arg("run").arg(plan).arg("-q").args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Kill::At(point, n) = kill {
        cmd.env("WRAPFLOW_FAILPOINT", format!("{point}:{n}"));
    }
    let mut child = cmd.spawn().expect("start wrapflow");
    let status = match kill {
        Kill::At(..) => child.wait().unwrap(),
        Kill::After(d) => {
            let start = Instant::now();
            loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if start.elapsed() >= *d {
                    child.kill().unwrap();
                    break child.wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let crashed = !status.success();
    if crashed {
        // A crash is an abort or a kill, never an error of the job itself.
        assert!(stderr.contains("failpoint") || matches!(kill, Kill::After(_)), "the run failed by itself:\n{stderr}");
    }
    Attempt { kill: kill.clone(), crashed, stderr }
}

/// Runs the attempts in order, each resuming the last, then one to the end; returns them.
pub fn crash_and_resume(plan: &Path, args: &[&str], kills: &[Kill]) -> Vec<Attempt> {
    let mut done: Vec<Attempt> = kills.iter().map(|k| attempt(plan, args, k)).collect();
    let last = attempt(plan, args, &Kill::After(Duration::from_secs(600)));
    assert!(!last.crashed, "the final resume failed:\n{}", last.stderr);
    done.push(last);
    done
}

/// Files under `dir` (relative path → bytes), skipping `_wrapflow/` and the run's own records.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            if rel.starts_with("_wrapflow") || ["manifest.json", "report.html", "README.md"].contains(&rel.as_str()) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Rows of the JSON Lines files in `dir` as sorted strings (a multiset).
pub fn jsonl_rows(dir: &Path) -> Vec<String> {
    let mut rows: Vec<String> = super::read_rejects(dir).iter().map(|v| v.to_string()).collect();
    rows.sort();
    rows
}

/// Asserts that a resumed output equals an uninterrupted one: chunks and mixtures byte for byte,
/// synthetic rows and rejects as multisets, and the same counts.
pub fn assert_same_output(reference: &Path, resumed: &Path) {
    let (a, b) = (files(reference), files(resumed));
    let names = |m: &BTreeMap<String, Vec<u8>>, dir: &str| -> Vec<String> {
        m.keys().filter(|k| k.starts_with(dir)).cloned().collect()
    };
    for dir in ["chunks/", "mix/"] {
        assert_eq!(names(&a, dir), names(&b, dir), "files under {dir}");
        for k in names(&a, dir) {
            assert!(a[&k] == b[&k], "{k} differs between the uninterrupted and the resumed run");
        }
    }
    assert_eq!(
        super::read_parquet_rows(&reference.join("synthetic")),
        super::read_parquet_rows(&resumed.join("synthetic")),
        "synthetic rows"
    );
    assert_eq!(jsonl_rows(&reference.join("rejects")), jsonl_rows(&resumed.join("rejects")), "rejects");
    let manifest = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap()
    };
    let (ma, mb) = (manifest(reference), manifest(resumed));
    assert_eq!(ma["counts"], mb["counts"]);
    assert_eq!(ma["job"]["status"], "finished");
    assert_eq!(mb["job"]["status"], "finished");
    if !ma["rephrase"].is_null() {
        for k in ["tasks", "accepted", "rejected"] {
            assert_eq!(ma["rephrase"][k], mb["rephrase"][k], "rephrase.{k}");
        }
    }
    // Each card lists exactly the shards its manifest names (a resume rewrites it).
    for (d, m) in [(reference, &ma), (resumed, &mb)] {
        assert_eq!(card_files(d), manifest_files(m), "{}/README.md against its manifest", d.display());
    }
}

/// The files of each configuration in the YAML header of `dir/README.md`.
pub fn card_files(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let header = card.split("\n---\n").next().unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in header.lines() {
        if let Some(name) = line.strip_prefix("- config_name: ") {
            current = serde_json::from_str(name).unwrap();
            out.insert(current.clone(), vec![]);
        } else if let Some(file) = line.strip_prefix("    - ") {
            out.get_mut(&current).unwrap().push(serde_json::from_str(file).unwrap());
        }
    }
    out
}

/// What a card should list for a run's manifest: its real, synthetic and row-mixture shards.
pub fn manifest_files(m: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let paths = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect()
    };
    let mut out = BTreeMap::from([("real".to_string(), paths(&m["chunks"]["shards"]))]);
    if !m["rephrase"].is_null() {
        out.insert("synthetic".into(), paths(&m["rephrase"]["synthetic"]["shards"]));
    }
    for x in m["mixes"].as_array().into_iter().flatten().filter(|x| x["config"]["format"] != "megatron") {
        out.insert(format!("mix_{}", x["name"].as_str().unwrap()), paths(&x["shards"]));
    }
    out.retain(|_, v| !v.is_empty());
    out
}
