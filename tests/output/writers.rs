//! One job writes an output at a time, locally and on object storage: a second run is refused
//! while the first holds the lease, `status` names the holder, and the lease ends with the job.

use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// The manifest's counts reconcile; returns the rows its chunk shards list and its chunk count.
fn reconciled(m: &serde_json::Value) -> (u64, u64) {
    let c = &m["counts"];
    let sum: u64 = ["rejected", "filtered", "limited", "duplicates", "near_duplicates", "kept"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum();
    assert_eq!(c["read"].as_u64().unwrap(), sum, "{c}");
    let rows: u64 = m["chunks"]["shards"].as_array().unwrap().iter().map(|s| s["rows"].as_u64().unwrap()).sum();
    (rows, c["chunks"].as_u64().unwrap())
}

/// No chunk row of the shards in `chunks` appears twice, and there are `rows` of them.
fn once_each(chunks: &Path, rows: u64) {
    let read = read_chunks(chunks);
    let mut keys: Vec<(String, u32)> = read.iter().map(|r| (r.0.clone(), r.1)).collect();
    keys.dedup();
    assert_eq!((read.len() as u64, keys.len() as u64), (rows, rows), "no row twice");
}

/// A followed job (`--follow`, a checkpoint per file), once it has committed a checkpoint.
fn followed_until_checkpoint(
    plan: &Path,
    s: &[(String, String)],
    out_manifest: &impl Fn() -> Option<serde_json::Value>,
) -> std::process::Child {
    let mut c = Command::new(BIN)
        .args(run_args(plan, s, &["--follow", "--poll", "1s", "--checkpoint-files", "1"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while out_manifest().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the job committed no checkpoint");
        assert!(c.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

/// A job killed outright after a checkpoint leaves its lease: `status` says the job is dead, a
/// new run takes the output over at once (its process is gone from this host) and finishes with
/// reconciled counts and no row twice.
fn killed_then_taken_over(
    plan: &Path,
    s: &[(String, String)],
    out_manifest: impl Fn() -> Option<serde_json::Value>,
    chunks: impl Fn() -> std::path::PathBuf,
    status_env: &[(String, String)],
) {
    let mut c = followed_until_checkpoint(plan, s, &out_manifest);
    c.kill().unwrap();
    c.wait().unwrap();
    let output = &s.iter().find(|(k, _)| k == "output").unwrap().1;
    let text = String::from_utf8_lossy(&cli_env(&["status", output], status_env).stdout).to_string();
    assert!(text.contains("dead") && !text.contains(": running"), "{text}");
    let r = cli(&run_args(plan, s, &["-q"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m = out_manifest().unwrap();
    assert_eq!(m["job"]["status"], "finished", "{m}");
    let (rows, chunks_n) = reconciled(&m);
    assert_eq!(rows, chunks_n);
    once_each(&chunks(), rows);
}

/// A followed job holds the output; a second job fails fast naming it; SIGINT stops the first
/// with "stopped" and a reconciled manifest; `status` then tells a dead job from a running one.
fn one_writer(
    plan: &Path,
    s: &[(String, String)],
    out_manifest: impl Fn() -> Option<serde_json::Value>,
    local: Option<&Path>,
    status_env: &[(String, String)],
) {
    let a = followed_until_checkpoint(plan, s, &out_manifest);
    let t1 = Instant::now();
    let b = cli(&run_args(plan, s, &["-q"]).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(!b.status.success() && err.contains("being written by another wrapflow job"), "{err}");
    assert!(err.contains(&format!("process {}", a.id())), "names the holder: {err}");
    assert!(t1.elapsed() < Duration::from_secs(20), "fails fast");
    let output = &s.iter().find(|(k, _)| k == "output").unwrap().1;
    let status = cli_env(&["status", output], status_env);
    assert!(String::from_utf8_lossy(&status.stdout).contains("running"), "{status:?}");

    sigint(&a);
    let t2 = Instant::now();
    let done = a.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
    assert!(stderr.contains("stopping at the next checkpoint"), "{stderr}");
    assert_eq!(done.status.code(), Some(130), "stopped is not success: {stderr}");
    assert!(stdout.contains("stopped"), "{stdout}");
    assert!(t2.elapsed() < Duration::from_secs(30));
    // Stopped: the shards written so far, and the open shard in the checkpoint's state.
    let (rows, chunks) = reconciled(&out_manifest().unwrap());
    assert!(rows <= chunks && chunks > 0);
    if let Some(out) = local {
        assert!(!out.join("_wrapflow/lease.json").exists(), "the lease is released");
    }
    let status = cli_env(&["status", output], status_env);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("stopped") && !text.contains("running"), "{text}");
    // Run again: it resumes and finishes, every chunk in a shard, nothing twice.
    let r = cli(&run_args(plan, s, &["-q"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (rows, chunks) = reconciled(&out_manifest().unwrap());
    assert_eq!(rows, chunks);
    if let Some(out) = local {
        once_each(&out.join("chunks"), rows);
    }
}

#[test]
fn one_job_writes_an_output_at_a_time_locally() {
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 3);
    let out = dir.path().join("out");
    let plan = dir.path().join("plan.sql");
    std::fs::write(&plan, plan_text("", "")).unwrap();
    let s = sets(&input, &out, &tok);
    let manifest = || std::fs::read(out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    one_writer(&plan, &s, manifest, Some(&out), &[]);

    let out = dir.path().join("killed");
    let s = sets(&input, &out, &tok);
    let manifest = || std::fs::read(out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    killed_then_taken_over(&plan, &s, manifest, || out.join("chunks"), &[]);
}

#[test]
fn one_job_writes_an_output_at_a_time_on_object_storage() {
    let server = common::s3::S3Server::start();
    server.create_bucket("out");
    let dir = TempDir::new().unwrap();
    let (input, tok) = setup(dir.path(), 3);
    let plan = dir.path().join("plan.sql");
    std::fs::write(&plan, plan_text("", &common::s3::s3_sink_options(&server.endpoint()))).unwrap();
    let mut s = sets(&input, Path::new("s3://out/run"), &tok);
    s[1].1 = "s3://out/run".into();
    let store = server.store("out");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let manifest = || {
        rt.block_on(async {
            let got = store.get(&object_store::path::Path::from("run/manifest.json")).await.ok()?;
            serde_json::from_slice(&got.bytes().await.ok()?).ok()
        })
    };
    one_writer(&plan, &s, manifest, None, &status_env(&server.endpoint()));
    let mut s = sets(&input, Path::new("s3://out/killed"), &tok);
    s[1].1 = "s3://out/killed".into();
    let manifest = || {
        rt.block_on(async {
            let got = store.get(&object_store::path::Path::from("killed/manifest.json")).await.ok()?;
            serde_json::from_slice(&got.bytes().await.ok()?).ok()
        })
    };
    let chunks = || {
        let local = dir.path().join("killed-chunks");
        rt.block_on(common::s3::download(&store, "killed/chunks", &local));
        local
    };
    killed_then_taken_over(&plan, &s, manifest, chunks, &status_env(&server.endpoint()));
}
