//! Unit tests of `job::output` (leases).

use super::*;

#[test]
fn a_lease_is_alive_only_while_unexpired_and_its_process_may_be_running() {
    let lease = |host: String, pid: u32, expires_unix: u64| LeaseDoc {
        host,
        pid,
        token: "t".into(),
        acquired_at: String::new(),
        expires_unix,
    };
    let (later, earlier) = (unix_now() + 60, unix_now() - 1);
    let parent = std::os::unix::process::parent_id();
    assert!(lease(hostname(), parent, later).alive(), "a running process on this host");
    assert!(lease("elsewhere".into(), 1, later).alive(), "another host: until it expires");
    assert!(!lease("elsewhere".into(), 1, earlier).alive(), "expired");
    assert!(!lease(hostname(), parent, earlier).alive(), "expired, its process still running");
    // A restarted container: same hostname, the same pid as the dead holder (this process's).
    assert!(!lease(hostname(), std::process::id(), later).alive(), "a holder with this very pid is gone");
    assert!(!lease(hostname(), u32::MAX / 2, later).alive(), "no such process on this host");
}

#[test]
fn names_wrapflow_gives_are_ours_and_nothing_else() {
    for p in [
        "chunks/part-00000-000001.parquet",
        "rejects/part-00001-000000.jsonl",
        "synthetic/part-00000-000003.parquet",
        "mix/wrap/s001-all-000000.parquet",
        "mix/tok/s002-easy-000001.meta.parquet",
        "_wrapflow/state/c00000001/w00000/index.json",
        "_wrapflow/checkpoints/c00000002.json",
        "manifest.json",
        "README.md",
    ] {
        assert!(is_ours(p), "{p}");
    }
    for p in ["chunks/mine.txt", "chunks/part-0-1.parquet", "notes.md", "mix/x.parquet", "_wrapflow/owner.json"] {
        assert!(!is_ours(p), "{p}");
    }
}
