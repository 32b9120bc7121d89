//! Long-running jobs on local files: kill -9 at many points and resume to the same output as an
//! uninterrupted run, follow a growing input, stop on SIGTERM, and keep dedup state across
//! restarts. The tiny random-weight model and MiniLM make the run rephrase (`scripts/test.sh`).

mod common;
#[path = "resume/watch.rs"]
mod watch;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::crash::{Kill, assert_same_output, crash_and_resume, jsonl_rows, wrap_plan, wrapflow, write_inputs};
use common::*;
use serde_json::Value;
use tempfile::TempDir;

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn killed_at_many_points_the_resumed_output_equals_an_uninterrupted_run() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 10);
    let plan = wrap_plan(dir.path(), input.to_str().unwrap(), "${output}", "", "");
    let (reference, resumed) = (dir.path().join("reference"), dir.path().join("resumed"));
    let args = |out: &Path| {
        vec!["--checkpoint-files".to_string(), "1".into(), "--set".into(), format!("output={}", out.display())]
    };
    let a = args(&reference);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let whole = crash_and_resume(&plan, &a, &[]);
    assert_eq!(whole.len(), 1);
    let m = manifest(&reference);
    assert_eq!(m["counts"]["duplicates"], 1, "{m}");
    assert_eq!(m["counts"]["rejected"], 1, "{m}");
    assert!(m["rephrase"]["accepted"].as_u64().unwrap() > 10, "{m}");

    // Kills while reading, rephrasing, writing shards, saving state and committing, and at
    // arbitrary moments; each run resumes the one before.
    let kills = [
        Kill::At("batch", 1),
        Kill::At("rephrase", 2),
        Kill::At("shard", 1),
        Kill::At("state", 1),
        Kill::At("commit", 1),
        Kill::At("rephrase", 6),
        Kill::At("shard", 2),
        Kill::At("state", 2),
        Kill::At("commit", 1),
        Kill::At("batch", 3),
        Kill::After(Duration::from_millis(700)),
        Kill::After(Duration::from_millis(1500)),
    ];
    let b = args(&resumed);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let attempts = crash_and_resume(&plan, &b, &kills);
    let crashed = attempts.iter().filter(|a| a.crashed).count();
    for phase in ["batch", "rephrase", "shard", "state", "commit"] {
        assert!(
            attempts.iter().any(|a| a.crashed && a.stderr.contains(&format!("failpoint {phase}:"))),
            "no run died at {phase}: {attempts:#?}"
        );
    }
    assert!(crashed >= 10, "only {crashed} runs were killed: {attempts:#?}");
    assert_same_output(&reference, &resumed);
    // Rephrasings done before a crash came back from the journal instead of the model.
    let m = manifest(&resumed);
    assert!(m["rephrase"]["journal_reused"].as_u64().unwrap() > 0, "{}", m["rephrase"]);
    assert_eq!(manifest(&reference)["rephrase"]["journal_reused"], 0);
    assert!(
        !resumed.join("_wrapflow/journal").exists()
            || common::crash::files(&resumed.join("_wrapflow/journal")).is_empty()
    );
    // Nothing uncommitted is left: every shard is named by the manifest.
    let listed: Vec<String> = manifest(&resumed)["chunks"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    let on_disk: Vec<String> =
        common::crash::files(&resumed).into_keys().filter(|k| k.starts_with("chunks/")).collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn two_rephrase_stages_resume_from_one_journal_with_the_same_rows() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 3);
    let plan = wrap_plan(dir.path(), input.to_str().unwrap(), "${output}", "", "");
    // Each REPHRASE's styles start at place 0 of its list: a journal entry of one must never
    // answer a task of the other.
    let text = std::fs::read_to_string(&plan).unwrap();
    let first = text.lines().find(|l| l.starts_with("REPHRASE")).unwrap();
    // Short time slices: answers leave the rephrase operators, and reach their journals, a few
    // at a time, so that each kill below finds some journaled.
    let line = first.replace("journal_rows = 2", "journal_rows = 2, time_slice_ms = 1");
    let qa = line.replace("'echo,qa'", "'qa'").replace("seed = 3", "seed = 5");
    let two = format!("{}\n{qa}", line.replace("'echo,qa'", "'echo'"));
    std::fs::write(&plan, text.replace(first, &two)).unwrap();
    let (reference, resumed) = (dir.path().join("reference"), dir.path().join("resumed"));
    let args = |out: &Path| {
        vec!["--checkpoint-files".to_string(), "2".into(), "--set".into(), format!("output={}", out.display())]
    };
    let a = args(&reference);
    assert_eq!(crash_and_resume(&plan, &a.iter().map(String::as_str).collect::<Vec<_>>(), &[]).len(), 1);
    // Late enough in each attempt that the journal has written what came before.
    let kills = [Kill::At("rephrase", 12), Kill::At("rephrase", 20), Kill::At("rephrase", 28)];
    let b = args(&resumed);
    let attempts = crash_and_resume(&plan, &b.iter().map(String::as_str).collect::<Vec<_>>(), &kills);
    assert!(attempts.iter().filter(|a| a.crashed).count() >= 3, "{attempts:#?}");
    assert_same_output(&reference, &resumed);
    let m = manifest(&resumed);
    assert!(m["rephrase"]["journal_reused"].as_u64().unwrap() > 0, "{attempts:#?}");
    let styles: Vec<&Value> = m["rephrase"]["models"].as_array().unwrap().iter().map(|x| &x["styles"]).collect();
    assert_eq!(styles, [&serde_json::json!(["echo"]), &serde_json::json!(["qa"])]);
}

fn follow(plan: &Path, out: &Path) -> Child {
    wrapflow()
        .args(["run", plan.to_str().unwrap(), "-q", "--follow", "--poll", "100ms", "--checkpoint-files", "2"])
        .args(["--set", &format!("output={}", out.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the committed manifest says `input_files` objects are consumed.
fn wait_for_files(out: &Path, n: u64, child: &mut Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Ok(bytes) = std::fs::read(out.join("manifest.json"))
            && let Ok(m) = serde_json::from_slice::<Value>(&bytes)
            && m["job"]["input_files"].as_u64() == Some(n)
        {
            return m;
        }
        assert!(child.try_wait().unwrap().is_none(), "the followed job ended by itself");
        assert!(Instant::now() < deadline, "the job did not consume {n} files in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

fn chunk_docs(out: &Path) -> Vec<String> {
    let mut ids: Vec<String> = read_chunks(&out.join("chunks")).into_iter().map(|c| c.0).collect();
    ids.dedup();
    ids
}

/// Plain chunking plan (no model) over a directory, for the follow tests.
fn chunk_plan(dir: &Path, input: &Path) -> PathBuf {
    chunk_plan_with(dir, input, "")
}

/// The same with `stages` after exact dedup.
fn chunk_plan_with(dir: &Path, input: &Path, stages: &str) -> PathBuf {
    let tok = tokenizer(dir);
    let plan = format!(
        "PARAM output;\n\
         TOKENIZER '{tok}';\n\
         CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '{input}';\n\
         INPUT raw;\n\
         DEDUP ON text;\n\
         {stages}\n\
         CHUNK WITH (max_tokens = 64);\n\
         SINK '${{output}}' WITH (shard_rows = 5);\n\
         MIX real WITH (ratio = '1:0', shard_tokens = 500);\n",
        tok = tok.display(),
        input = input.display()
    );
    let path = dir.join("follow.sql");
    std::fs::write(&path, plan).unwrap();
    path
}

#[test]
fn a_followed_job_takes_new_files_reports_changed_ones_and_stops_on_sigterm() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let plan = chunk_plan(dir.path(), &input);
    let out = dir.path().join("out");
    let mut job = follow(&plan, &out);
    // The prefix starts empty; files land while the job runs.
    std::thread::sleep(Duration::from_millis(300));
    write_inputs(&input, 0, 2);
    wait_for_files(&out, 2, &mut job);
    write_inputs(&input, 2, 3);
    let m = wait_for_files(&out, 5, &mut job);
    assert_eq!(m["job"]["status"], "running");
    assert_eq!(m["counts"]["duplicates"], 1, "file 3 repeats a document of file 0: {m}");
    // A file that changes after it was read is reported, not read again.
    std::fs::write(input.join("part-000.jsonl"), json_line("new", &doc_text(99))).unwrap();
    write_inputs(&input, 5, 1);
    let m = wait_for_files(&out, 6, &mut job);
    let changed = m["job"]["changed_inputs"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{m}");
    // Named relative to the input location, as `inputs[].files` and records' `source_file` are.
    assert_eq!(changed[0]["now"]["path"], "part-000.jsonl");
    assert_eq!(changed[0]["read"]["path"], "part-000.jsonl");
    // A change seen after the last checkpoint is in the stopped job's manifest too.
    std::fs::write(input.join("part-001.jsonl"), json_line("newer", &doc_text(98))).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let status = sigterm(&mut job);
    assert_eq!(status.code(), Some(130), "SIGTERM stops the job cleanly, as stopped (130): {status:?}");
    let m = manifest(&out);
    assert_eq!(m["job"]["status"], "stopped");
    let changed: Vec<&str> =
        m["job"]["changed_inputs"].as_array().unwrap().iter().map(|c| c["now"]["path"].as_str().unwrap()).collect();
    assert_eq!(changed, ["part-000.jsonl", "part-001.jsonl"]);
    assert!(!chunk_docs(&out).contains(&"new".to_string()));
    let text = String::from_utf8_lossy(&wrapflow().args(["status", out.to_str().unwrap()]).output().unwrap().stdout)
        .to_string();
    assert!(text.contains("stopped at checkpoint") && text.contains("6 input files done"), "{text}");
    assert!(text.contains("changed after it was read"), "{text}");
}

#[test]
fn dedup_state_survives_a_kill_and_a_restart() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 2);
    let plan = chunk_plan(dir.path(), &input);
    let out = dir.path().join("out");
    let mut job = follow(&plan, &out);
    wait_for_files(&out, 2, &mut job);
    job.kill().unwrap();
    job.wait().unwrap();
    // Written while the job is down: file 3 repeats a document of file 0, read before the crash.
    write_inputs(&input, 2, 2);
    let mut job = follow(&plan, &out);
    let m = wait_for_files(&out, 4, &mut job);
    assert_eq!(m["counts"]["duplicates"], 1, "{m}");
    assert_eq!(m["counts"]["read"], 4 * 4 + 2, "{m}");
    let ids = chunk_docs(&out);
    assert!(!ids.contains(&"again".to_string()), "the duplicate of a pre-crash document was kept");
    assert_eq!(ids.len(), 16, "{ids:?}");
    assert_eq!(sigterm(&mut job).code(), Some(130));
}

#[test]
fn near_duplicate_clusters_survive_a_kill_and_a_restart() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    let text = |seed: u64| random_words(seed, 300).join(" ");
    let file = |name: &str, docs: &[(&str, String)]| {
        let lines: Vec<String> = docs.iter().map(|(id, t)| json_line(id, t)).collect();
        write(&input.join(name), lines.join("\n").as_bytes());
    };
    file("part-0.jsonl", &[("a", text(1)), ("b", text(2))]);
    file("part-1.jsonl", &[("c", text(3)), ("d", text(4))]);
    let plan = chunk_plan_with(dir.path(), &input, "NEARDUP WITH (ngram = 3, bands = 20, rows = 5);");
    let out = dir.path().join("out");
    let mut job = follow(&plan, &out);
    wait_for_files(&out, 2, &mut job);
    job.kill().unwrap();
    job.wait().unwrap();
    // Written while the job is down: near duplicates of `a` (2% of its words changed) and of `c`
    // (its last 10% replaced), read before the crash, and two new documents.
    let mut a2 = random_words(1, 300);
    for k in 0..6 {
        a2[k * 50] = format!("edit{k}");
    }
    let mut c2 = random_words(3, 270);
    c2.extend(random_words(8, 30));
    file("part-2.jsonl", &[("a2", a2.join(" ")), ("e", text(5))]);
    file("part-3.jsonl", &[("c2", c2.join(" ")), ("g", text(6))]);
    let mut job = follow(&plan, &out);
    let m = wait_for_files(&out, 4, &mut job);
    assert!(m["counts"].as_object().unwrap().contains_key("near_duplicates"), "{m}");
    let ids = chunk_docs(&out);
    assert_eq!(ids, ["a", "b", "c", "d", "e", "g"], "{m}");
    assert_eq!(m["counts"]["near_duplicates"], 2, "{m}");
    assert_eq!(sigterm(&mut job).code(), Some(130));
}

#[test]
fn a_checkpoint_interval_sizes_segments_by_the_measured_rate() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 6);
    let plan = chunk_plan(dir.path(), &input);
    let mut docs = Vec::new();
    for (interval, segments) in [("1ms", 6), ("1h", 2)] {
        let out = dir.path().join(format!("out-{interval}"));
        let run = wrapflow()
            .args(["run", plan.to_str().unwrap(), "-q", "--checkpoint-interval", interval])
            .args(["--set", &format!("output={}", out.display())])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let m = manifest(&out);
        // The first segment is one object; then 1 ms of input is one object, 1 h all the rest.
        assert_eq!(m["job"]["segments"], segments, "{interval}: {m}");
        assert_eq!(m["job"]["status"], "finished");
        docs.push(chunk_docs(&out));
    }
    assert_eq!(docs[0], docs[1], "the same documents whatever the segments");
    assert_eq!(docs[0].len(), 6 * 4);
}

/// Every state part that worker `w` saved (any checkpoint), by its path.
fn state_parts(out: &Path, w: usize) -> Vec<PathBuf> {
    let mut parts = Vec::new();
    for c in std::fs::read_dir(out.join("_wrapflow/state")).unwrap() {
        let dir = c.unwrap().path().join(format!("w{w:05}"));
        for p in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = p.unwrap().path();
            if p.extension().is_some_and(|x| x == "bin") {
                parts.push(p);
            }
        }
    }
    assert!(!parts.is_empty(), "worker {w} saved no state under {}", out.display());
    parts
}

#[test]
fn one_workers_bad_state_stops_every_worker_at_once_with_its_error() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 6);
    let plan = chunk_plan(dir.path(), &input);
    // A run of 2 workers that dies right after committing its third checkpoint.
    let died = |out: &Path| {
        let r = wrapflow()
            .args(["run", plan.to_str().unwrap(), "-q", "--workers", "2", "--checkpoint-files", "1"])
            .args(["--set", &format!("output={}", out.display())])
            .env("WRAPFLOW_FAILPOINT", "commit:3")
            .output()
            .unwrap();
        assert!(!r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    for (bad, how) in [(0, "garbage"), (1, "garbage"), (0, "empty"), (1, "missing")] {
        let out = dir.path().join(format!("out-{bad}-{how}"));
        died(&out);
        let parts = state_parts(&out, bad);
        for p in &parts {
            match how {
                "garbage" => std::fs::write(p, b"\xff\x00not a state\x01").unwrap(),
                "empty" => std::fs::write(p, b"").unwrap(),
                _ => std::fs::remove_file(p).unwrap(),
            }
        }
        let t0 = Instant::now();
        let mut job = wrapflow()
            .args(["run", plan.to_str().unwrap(), "-q", "--workers", "2", "--checkpoint-files", "1"])
            .args(["--set", &format!("output={}", out.display())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = job.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                job.kill().unwrap();
                panic!("worker {bad}'s {how} state: the job still ran after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "worker {bad}'s {how} state: the job succeeded\n{stderr}");
        assert_eq!(status.code(), Some(1), "{stderr}");
        // The error is the bad worker's, naming its file.
        let named = parts.iter().any(|p| {
            let rel = p.strip_prefix(&out).unwrap().to_string_lossy().to_string();
            stderr.contains(&rel)
        });
        assert!(named, "worker {bad}'s {how} state: the error names none of {parts:?}\n{stderr}");
        assert!(!stderr.contains(&format!("w{:05}", 1 - bad)), "the other worker's files are named:\n{stderr}");
        assert!(stderr.contains(&format!("worker {bad}")), "{stderr}");
    }
    // The intact run resumes to the end; a temporary file that a kill left beside the manifest
    // (a local store writes `name#N`, then renames it) is removed.
    let base = dir.path().join("base");
    died(&base);
    std::fs::write(base.join("manifest.json#7"), b"{").unwrap();
    let resumed = wrapflow()
        .args(["run", plan.to_str().unwrap(), "-q", "--workers", "2", "--checkpoint-files", "1"])
        .args(["--set", &format!("output={}", base.display())])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(!base.join("manifest.json#7").exists(), "the partial manifest was left");
    let m = manifest(&base);
    assert_eq!((m["job"]["status"].as_str(), m["counts"]["read"].as_u64()), (Some("finished"), Some(6 * 4 + 2)), "{m}");
}

#[test]
fn a_followed_input_never_reads_back_the_output_inside_it() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    // File 3 has a broken line: the job writes a JSONL reject under the output, inside the input.
    write_inputs(&input, 2, 2);
    // One row per shard: the reject is written at once (rejects take the SINK's shard sizes).
    let plan = chunk_plan(dir.path(), &input);
    let text = std::fs::read_to_string(&plan).unwrap().replace("shard_rows = 5", "shard_rows = 1");
    std::fs::write(&plan, text).unwrap();
    let out = input.join("out");
    let mut job = follow(&plan, &out);
    let m = wait_for_files(&out, 2, &mut job);
    assert_eq!((m["counts"]["read"].as_u64(), m["counts"]["rejected"].as_u64()), (Some(10), Some(1)), "{m}");
    assert_eq!(jsonl_rows(&out.join("rejects")).len(), 1, "the reject shard");
    assert_eq!(std::fs::read_dir(out.join("rejects")).unwrap().count(), 1);
    // Many polls later nothing of the output has come back as input.
    std::thread::sleep(Duration::from_millis(1500));
    write_inputs(&input, 4, 1);
    let m = wait_for_files(&out, 3, &mut job);
    std::thread::sleep(Duration::from_millis(1000));
    let m2 = manifest(&out);
    assert_eq!(m2["job"]["input_files"], 3, "{m2}");
    assert_eq!(m2["counts"], m["counts"], "the output was read back");
    assert_eq!(m2["counts"]["read"], 14, "{m2}");
    let skipped: Vec<&Value> = m2["inputs"][0]["skipped"].as_array().unwrap().iter().collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["path"], "out/", "{skipped:?}");
    assert_eq!(sigterm(&mut job).code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let warned = stderr.lines().filter(|l| l.contains("WARN") && l.contains("not read")).count();
    assert_eq!(warned, 1, "one warning for the output folder:\n{stderr}");
}

#[test]
fn a_damaged_journal_is_named_with_how_to_recover() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    write_inputs(&input, 0, 2);
    let plan = wrap_plan(dir.path(), input.to_str().unwrap(), "${output}", "", "");
    let out = dir.path().join("out");
    let args = ["--checkpoint-files", "1", "--set", &format!("output={}", out.display())];
    // Killed while rephrasing, before its first checkpoint: a resume reads the journal of
    // segment 0, here a damaged file under the name a worker gives one.
    let killed = common::crash::attempt(&plan, &args, &Kill::At("rephrase", 2));
    assert!(killed.crashed, "{killed:?}");
    let owner: Value = serde_json::from_slice(&std::fs::read(out.join("_wrapflow/owner.json")).unwrap()).unwrap();
    let hash = owner["plan_hash"].as_str().unwrap();
    let damaged = out.join(format!("_wrapflow/journal/{}/s00000000/w00000-0-000001.bin", &hash[..16]));
    common::write(&damaged, b"\x07 not a journal");
    let journal = [damaged];
    let run = || wrapflow().arg("run").arg(&plan).arg("-q").args(args).output().unwrap();
    let damaged = run();
    let err = String::from_utf8_lossy(&damaged.stderr);
    assert!(!damaged.status.success(), "{err}");
    assert!(err.contains("the rephrase journal") && err.contains("delete it"), "{err}");
    assert!(
        journal.iter().any(|j| err.contains(&j.strip_prefix(&out).unwrap().to_string_lossy().to_string())),
        "{err}"
    );
    // As it says: without the damaged files the run finishes.
    journal.iter().for_each(|j| std::fs::remove_file(j).unwrap());
    let r = run();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(manifest(&out)["job"]["status"], "finished");
}
