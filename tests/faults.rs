//! Long-running jobs against an S3-compatible server on loopback (moto): killed at many points
//! and resumed, and an outage of the server longer than the retry budget, after which the job
//! has stopped at its last checkpoint and a restart finishes it, with the output of an
//! uninterrupted run.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::crash::{Kill, assert_same_output, crash_and_resume, input_file, wrap_plan, wrapflow};
use common::s3::*;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use tempfile::TempDir;

/// Puts the input files into `bucket/in/` and returns the plan (its output is `${output}`).
fn s3_job(server: &S3Server, endpoint: &str, dir: &Path) -> std::path::PathBuf {
    server.create_bucket("corpus");
    let store = server.store("corpus");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for f in 0..10 {
        let name = StorePath::from(format!("in/part-{f:03}.jsonl"));
        rt.block_on(store.put(&name, PutPayload::from(input_file(f)))).unwrap();
    }
    // A small retry budget, so that an outage outlasts it quickly.
    let opts = s3_options(endpoint);
    let retry = "'retry_max' '2', 'retry_timeout_s' '3'";
    wrap_plan(
        dir,
        "s3://corpus/in/",
        "${output}",
        &format!("OPTIONS ({opts}, {retry})"),
        &(s3_sink_options(endpoint) + ", retry_max = '2', retry_timeout_s = '3'"),
    )
}

fn args(output: &str) -> Vec<String> {
    ["--checkpoint-files", "1", "--set", &format!("output={output}")].map(String::from).to_vec()
}

fn fetch(server: &S3Server, prefix: &str, dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(download(&server.store("corpus"), prefix, dir));
}

#[test]
fn killed_at_many_points_against_s3_the_resumed_output_equals_an_uninterrupted_run() {
    let server = S3Server::start();
    let dir = TempDir::new().unwrap();
    let plan = s3_job(&server, &server.endpoint(), dir.path());
    let a = args("s3://corpus/reference");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    crash_and_resume(&plan, &a, &[]);
    let kills = [
        Kill::At("batch", 1),
        Kill::At("rephrase", 3),
        Kill::At("shard", 2),
        Kill::At("state", 1),
        Kill::At("commit", 1),
        Kill::At("rephrase", 7),
        Kill::At("shard", 1),
        Kill::At("state", 2),
        Kill::At("commit", 1),
        Kill::At("batch", 2),
        Kill::After(Duration::from_millis(900)),
        Kill::After(Duration::from_millis(2000)),
    ];
    let b = args("s3://corpus/resumed");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let attempts = crash_and_resume(&plan, &b, &kills);
    // The injected aborts alone are 10 kills; the timed ones land wherever the run is.
    let crashed = attempts.iter().filter(|a| a.crashed).count();
    assert!(crashed >= 10, "only {crashed} runs were killed: {attempts:#?}");
    let (reference, resumed) = (dir.path().join("reference"), dir.path().join("resumed"));
    fetch(&server, "reference", &reference);
    fetch(&server, "resumed", &resumed);
    assert_same_output(&reference, &resumed);
}

#[test]
fn an_outage_longer_than_the_retry_budget_stops_at_a_checkpoint_and_a_restart_finishes() {
    let server = S3Server::start();
    let proxy = Proxy::start(server.port);
    let dir = TempDir::new().unwrap();
    let plan = s3_job(&server, &proxy.endpoint(), dir.path());
    let a = args("s3://corpus/reference");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    crash_and_resume(&plan, &a, &[]);

    let b = args("s3://corpus/faulted");
    let mut job = wrapflow()
        .arg("run")
        .arg(&plan)
        .arg("-q")
        .args(&b)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first checkpoint is committed, the server goes away.
    let store = server.store("corpus");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = StorePath::from("faulted/_wrapflow/checkpoints/c00000001.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while rt.block_on(store.head(&first)).is_err() {
        assert!(Instant::now() < deadline, "no checkpoint was committed");
        assert!(job.try_wait().unwrap().is_none(), "the job ended before the outage");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.down();
    let started = Instant::now();
    let status = job.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the job cannot finish while the store is down");
    assert!(started.elapsed() < Duration::from_secs(90), "the job did not give up within its retry budget");
    assert!(stderr.contains("the job stopped at checkpoint"), "{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");
    proxy.up();
    let attempts = crash_and_resume(&plan, &b.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!attempts[0].crashed);
    let (reference, faulted) = (dir.path().join("reference"), dir.path().join("faulted"));
    fetch(&server, "reference", &reference);
    fetch(&server, "faulted", &faulted);
    assert_same_output(&reference, &faulted);
}

/// The output on a full disk (a 48 KB tmpfs, mounted in a private mount namespace made with
/// `unshare`, so nothing outside the test sees it), with 2 workers: the job stops within
/// seconds with an error that says the device is full, instead of hanging.
#[test]
fn a_full_disk_stops_the_job_with_an_error_that_says_so() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    common::crash::write_inputs(&input, 0, 20);
    let tok = common::tokenizer(dir.path());
    let plan = dir.path().join("plan.sql");
    std::fs::write(&plan, common::plan_text("", "")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=48k tmpfs '{out}' && exec '{bin}' run '{plan}' -q --workers 2 \
         --checkpoint-files 2 --set 'input={input}' --set 'output={out}' --set 'tokenizer={tok}'",
        out = out.display(),
        bin = env!("CARGO_BIN_EXE_wrapflow"),
        plan = plan.display(),
        input = input.display(),
        tok = tok.display(),
    );
    let t0 = Instant::now();
    let run = std::process::Command::new("unshare").args(["-rm", "sh", "-c", &script]).stdout(Stdio::null()).output();
    let run = run.expect("unshare (util-linux) runs the job in its own mount namespace");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!err.contains("mount:"), "the tmpfs was not mounted: {err}");
    assert!(!run.status.success(), "a job on a full disk must fail: {err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "the error says the disk is full, once: {err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "it stopped in {:?}", t0.elapsed());
}
