//! The restart story of `examples/cluster/statefulset.yaml`: two processes follow their input;
//! one dies; the other stops naming it; both are started again with the same command (as
//! Kubernetes restarts the containers), resume from the last checkpoint, read what lands next,
//! and stop on process 0's SIGTERM; run to the end, the output is that of one uninterrupted run.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::common::*;
use super::{corpus, files, hostfile, plan_file, read_manifest, run, spawn_process};

/// Waits until the committed manifest says `n` input objects are done.
fn wait_for_files(out: &Path, n: u64, procs: &mut [Child]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let m = std::fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if m.is_some_and(|m| m["job"]["input_files"].as_u64() == Some(n)) {
            return;
        }
        for p in procs.iter_mut() {
            assert!(p.try_wait().unwrap().is_none(), "a followed process ended by itself");
        }
        assert!(Instant::now() < deadline, "the cluster did not consume {n} files in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_followed_cluster_restarted_after_a_peer_dies_resumes_and_reads_what_lands_next() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let (input, _) = corpus(dir.path(), 4, 150);
    let plan = plan_file(dir.path());
    let out = dir.path().join("o");
    let spawn_with =
        |i: usize, hosts: &Path, follow: &[&str]| spawn_process(&plan, [&input, &out, &tok], i, hosts, follow);
    let spawn = |i: usize, hosts: &Path| spawn_with(i, hosts, &["--follow", "--poll", "100ms"]);
    let (hosts, addrs) = hostfile(dir.path(), 2);
    let mut first = vec![spawn(0, &hosts), spawn(1, &hosts)];
    wait_for_files(&out, 1, &mut first);
    let (p0, mut p1) = (first.remove(0), first.remove(0));
    p1.kill().unwrap();
    p1.wait().unwrap();
    let stopped = p0.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success() && err.contains(&addrs[1]), "process 0 stops naming its lost peer: {err}");

    // The same command again on both: the cluster resumes and follows.
    std::fs::create_dir_all(dir.path().join("again")).unwrap();
    let (hosts, _) = hostfile(&dir.path().join("again"), 2);
    let mut again = vec![spawn(0, &hosts), spawn(1, &hosts)];
    wait_for_files(&out, 4, &mut again);
    let extra = dir.path().join("in/part-4.jsonl");
    let late: String = (0..150).map(|k| json_line(&format!("late{k}"), &doc_text(10_000 + k)) + "\n").collect();
    write(&dir.path().join("in/.part-4.jsonl"), late.as_bytes());
    std::fs::rename(dir.path().join("in/.part-4.jsonl"), &extra).unwrap();
    wait_for_files(&out, 5, &mut again);
    unsafe { libc::kill(again[0].id() as i32, libc::SIGTERM) };
    for p in again {
        let o = p.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.code() == Some(130) || o.status.success(), "{err}");
    }
    assert_eq!(read_manifest(&out)["job"]["status"], "stopped");
    // Run once more without --follow: it resumes, finds nothing new, and finishes (flushing the
    // shards still open at the stop).
    std::fs::create_dir_all(dir.path().join("last")).unwrap();
    let (hosts, _) = hostfile(&dir.path().join("last"), 2);
    for p in [spawn_with(0, &hosts, &[]), spawn_with(1, &hosts, &[])] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(read_manifest(&out)["job"]["status"], "finished");

    // One uninterrupted process with as many workers, over the same five files.
    let one = dir.path().join("one");
    let sets = [("input", &input), ("output", &one), ("tokenizer", &tok)].map(|(k, v)| format!("{k}={}", v.display()));
    let mut args = vec!["run", plan.to_str().unwrap(), "-q", "--workers", "2", "--checkpoint-files", "1"];
    sets.iter().for_each(|s| args.extend(["--set", s.as_str()]));
    run(&args);
    assert_eq!(read_manifest(&out)["counts"], read_manifest(&one)["counts"]);
    for d in ["chunks", "mix/real"] {
        assert!(files(&out.join(d)) == files(&one.join(d)), "{d} differs after the restarts");
    }
}
