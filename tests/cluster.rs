//! Cluster mode on loopback: 2 processes × 1 worker give the same output as 1 process × 2
//! workers, every input row is read exactly once, a process whose peers are unreachable fails
//! with their addresses, and a killed peer stops the others cleanly with its name; restarted,
//! the cluster resumes from its last checkpoint to the output of an uninterrupted run.

mod common;
#[path = "cluster/follow.rs"]
mod follow;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_wrapflow");

/// A plan with dedup, chunking and a mixture of the real chunks.
fn plan_file(dir: &Path) -> PathBuf {
    let p = dir.join("plan.sql");
    let text = plan_text("", "").replace(
        "SINK '${output}' WITH (shard_rows = 50);",
        "SINK '${output}' WITH (shard_rows = 50);\nMIX real WITH (ratio = '1:0', shard_tokens = 2000, seed = 5);\n\
         MIX tok WITH (ratio = '1:0', format = 'tokens', tokenizer = '${tokenizer}', unit = 'document', shard_tokens = 3000, seed = 5);",
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// `files` JSONL files of `per_file` documents; every 7th document repeats one of another file.
fn corpus(dir: &Path, files: usize, per_file: usize) -> (PathBuf, BTreeMap<String, String>) {
    let input = dir.join("in");
    let mut docs = BTreeMap::new();
    for f in 0..files {
        let mut s = String::new();
        for k in 0..per_file {
            let i = f * per_file + k;
            let text = if i % 7 == 3 && f > 0 { doc_text(i - per_file) } else { doc_text(i) };
            s += &json_line(&format!("d{i}"), &text);
            s.push('\n');
            docs.insert(format!("d{i}"), text);
        }
        write(&input.join(format!("part-{f}.jsonl")), s.as_bytes());
    }
    (input, docs)
}

/// Process `i` of a 2-process cluster running `plan` from `input` to `out`, with `extra` options.
fn spawn_process(plan: &Path, dirs: [&Path; 3], i: usize, hosts: &Path, extra: &[&str]) -> std::process::Child {
    let [input, out, tok] = dirs;
    Command::new(BIN)
        .args(["run", plan.to_str().unwrap(), "-q", "--processes", "2", "--process", &i.to_string()])
        .args(["--checkpoint-files", "1", "--hostfile"])
        .arg(hosts)
        .args(extra)
        .args(["--set", &format!("input={}", input.display())])
        .args(["--set", &format!("output={}", out.display())])
        .args(["--set", &format!("tokenizer={}", tok.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut f: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    f.sort();
    f
}

#[test]
fn two_processes_give_the_output_of_one_and_read_every_row_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let (input, docs) = corpus(dir.path(), 6, 40);
    // A broken line: a reject, which each run must write the same.
    let part = input.join("part-2.jsonl");
    std::fs::write(&part, std::fs::read_to_string(&part).unwrap() + "{not json\n").unwrap();
    let plan = plan_file(dir.path());
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let sets = |out: &Path| {
        vec![
            format!("input={}", input.display()),
            format!("output={}", out.display()),
            format!("tokenizer={}", tok.display()),
        ]
    };
    let mut a = vec!["run".to_string(), plan.display().to_string(), "--workers".into(), "2".into(), "-q".into()];
    sets(&one).into_iter().for_each(|s| a.extend(["--set".to_string(), s]));
    run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut b = vec!["cluster".to_string(), "local".into(), "2".into(), plan.display().to_string()];
    b.extend(["--workers".into(), "1".into(), "-q".into()]);
    sets(&two).into_iter().for_each(|s| b.extend(["--set".to_string(), s]));
    run(&b.iter().map(String::as_str).collect::<Vec<_>>());

    let (m1, m2) = (read_manifest(&one), read_manifest(&two));
    assert_eq!(m1["workers"], 2);
    assert_eq!(m2["workers"], 2, "2 processes × 1 worker");
    assert_eq!(m1["counts"], m2["counts"]);
    // Every input row read once; dedup is global across processes.
    let c = &m2["counts"];
    assert_eq!(c["read"].as_u64().unwrap(), docs.len() as u64 + 1);
    assert_eq!(c["rejected"].as_u64(), Some(1), "{c}");
    let distinct: std::collections::BTreeSet<&String> = docs.values().collect();
    assert_eq!(c["kept"].as_u64().unwrap(), distinct.len() as u64, "one copy of each text");
    assert!(c["duplicates"].as_u64().unwrap() > 0);
    let chunks = read_chunks(&two.join("chunks"));
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for (doc, _, text, ..) in &chunks {
        texts.entry(doc.clone()).or_default().push_str(text);
    }
    assert_eq!(texts.len() as u64, distinct.len() as u64);
    assert!(texts.iter().all(|(id, t)| docs[id] == *t), "each kept document whole, once");
    // The same shards, byte for byte: chunks and rejects (named by global worker), and every
    // mixture.
    let mixtures: Vec<String> = ["real", "tok"].iter().map(|m| format!("mix/{m}")).collect();
    for sub in ["chunks", "rejects"].into_iter().chain(mixtures.iter().map(String::as_str)) {
        assert!(!files(&one.join(sub)).is_empty(), "{sub} is empty");
        assert_eq!(files(&one.join(sub)), files(&two.join(sub)), "{sub} differs between 1 and 2 processes");
    }
    let listed = |out: &Path| -> Vec<String> {
        let mut d: Vec<String> = std::fs::read_dir(out.join("mix"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        d.sort();
        d
    };
    assert_eq!(
        (listed(&one), listed(&two)),
        (vec!["real".to_string(), "tok".into()], vec!["real".into(), "tok".into()])
    );
    // The survivor of each duplicate group is its first occurrence in input order (file, then
    // line), on any number of workers and any segmentation: the copies in later files go.
    let later_copies: Vec<String> = (0..6 * 40).filter(|i| i % 7 == 3 && *i >= 40).map(|i| format!("d{i}")).collect();
    assert!(later_copies.iter().all(|d| !texts.contains_key(d)), "a later copy survived");
    let kept = |out: &Path| -> std::collections::BTreeSet<String> {
        read_chunks(&out.join("chunks")).into_iter().map(|r| r.0).collect()
    };
    let want: std::collections::BTreeSet<String> = texts.keys().cloned().collect();
    for (workers, segment) in [("1", "16"), ("3", "1")] {
        let out = dir.path().join(format!("w{workers}"));
        let mut c =
            vec!["run".to_string(), plan.display().to_string(), "--workers".into(), workers.into(), "-q".into()];
        c.extend(["--checkpoint-files".into(), segment.into()]);
        sets(&out).into_iter().for_each(|s| c.extend(["--set".to_string(), s]));
        run(&c.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(kept(&out), want, "{workers} workers, {segment} files per segment");
    }
    // 2 processes × 2 workers.
    let out = dir.path().join("p2w2");
    let mut c = vec!["cluster".to_string(), "local".into(), "2".into(), plan.display().to_string()];
    c.extend(["--workers".into(), "2".into(), "-q".into()]);
    sets(&out).into_iter().for_each(|s| c.extend(["--set".to_string(), s]));
    run(&c.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(kept(&out), want, "2 processes × 2 workers");
    // A run killed twice (while reading, then while committing) and resumed.
    let out = dir.path().join("killed");
    let mut a: Vec<String> = vec!["--workers".into(), "2".into(), "--checkpoint-files".into(), "2".into()];
    sets(&out).into_iter().for_each(|s| a.extend(["--set".to_string(), s]));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    use common::crash::{Kill, crash_and_resume};
    let attempts = crash_and_resume(&plan, &a, &[Kill::At("batch", 2), Kill::At("commit", 1)]);
    assert_eq!(attempts.iter().filter(|x| x.crashed).count(), 2, "{attempts:#?}");
    assert_eq!(kept(&out), want, "killed twice and resumed");
}

fn read_manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

fn hostfile(dir: &Path, n: usize) -> (PathBuf, Vec<String>) {
    let hosts: Vec<String> = (0..n)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", l.local_addr().unwrap().port())
        })
        .collect();
    let p = dir.join("hosts");
    std::fs::write(&p, hosts.join("\n")).unwrap();
    (p, hosts)
}

#[test]
fn a_process_that_cannot_reach_its_peers_names_them() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let (input, _) = corpus(dir.path(), 2, 5);
    let plan = plan_file(dir.path());
    let (hosts, addrs) = hostfile(dir.path(), 2);
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["run", plan.to_str().unwrap(), "-q", "--processes", "2", "--process", "1", "--connect-timeout", "2"])
        .arg("--hostfile")
        .arg(&hosts)
        .args([
            "--set",
            &format!("input={}", input.display()),
            "--set",
            &format!("output={}", dir.path().join("o").display()),
        ])
        .args(["--set", &format!("tokenizer={}", tok.display())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addrs[0]), "names the address it tried: {err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_killed_peer_stops_the_others_with_its_name_and_the_cluster_resumes() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    // Enough input to keep both processes busy for many seconds.
    let (input, _) = corpus(dir.path(), 4, 8000);
    let plan = plan_file(dir.path());
    let out = dir.path().join("o");
    let spawn = |i: usize, hosts: &Path| spawn_process(&plan, [&input, &out, &tok], i, hosts, &[]);
    let (hosts, addrs) = hostfile(dir.path(), 2);
    let p0 = spawn(0, &hosts);
    let mut p1 = spawn(1, &hosts);
    // Kill process 1 once the cluster has committed its first checkpoint.
    let t0 = Instant::now();
    while !out.join("_wrapflow/checkpoints/c00000001.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "the cluster never committed a checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    p1.kill().unwrap();
    p1.wait().unwrap();
    let t0 = Instant::now();
    let stopped = p0.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success(), "process 0 must not report success: {err}");
    assert!(err.contains("process 1") && err.contains(&addrs[1]), "names the lost peer: {err}");
    assert!(t0.elapsed() < Duration::from_secs(60));
    // The manifest of the last checkpoint (if it was written before the kill) says so.
    if out.join("manifest.json").exists() {
        assert_ne!(read_manifest(&out)["job"]["status"], "finished");
    }

    // Restarted, the cluster resumes from its last checkpoint and ends with the output of one
    // uninterrupted process with as many workers.
    std::fs::create_dir_all(dir.path().join("again")).unwrap();
    let (hosts, _) = hostfile(&dir.path().join("again"), 2);
    let (q0, q1) = (spawn(0, &hosts), spawn(1, &hosts));
    for q in [q0, q1] {
        let o = q.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let one = dir.path().join("one");
    run(&[
        "run",
        plan.to_str().unwrap(),
        "-q",
        "--workers",
        "2",
        "--checkpoint-files",
        "1",
        "--set",
        &format!("input={}", input.display()),
        "--set",
        &format!("output={}", one.display()),
        "--set",
        &format!("tokenizer={}", tok.display()),
    ]);
    assert_eq!(read_manifest(&out)["counts"], read_manifest(&one)["counts"]);
    assert_eq!(read_manifest(&out)["job"]["status"], "finished");
    for d in ["chunks", "mix/real"] {
        assert!(files(&out.join(d)) == files(&one.join(d)), "{d} differs after the resume");
    }
}

#[test]
fn parquet_row_groups_cover_every_row_once_across_workers() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let mut expected = BTreeMap::new();
    for (f, rows) in [(0, 33i64), (1, 12)] {
        let ids: Vec<i64> = (0..rows).map(|r| f * 1000 + r).collect();
        let texts: Vec<String> = ids.iter().map(|&i| doc_text(i as usize)).collect();
        for (k, i) in ids.iter().enumerate() {
            expected.insert(i.to_string(), (format!("part-{f}.parquet"), k as u64 + 1));
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(texts))],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(7)).build();
        let path = dir.path().join(format!("pq/part-{f}.parquet"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props))
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    write(&dir.path().join("pq/part-2.parquet"), b"PAR1 this is not a parquet file");
    let out = dir.path().join("out");
    let plan = format!(
        "TOKENIZER '{}';\nCREATE EXTERNAL TABLE raw STORED AS PARQUET LOCATION '{}';\nINPUT raw;\n\
         CHUNK WITH (max_tokens = 4000);\nSINK '{}';",
        tok.display(),
        dir.path().join("pq").display(),
        out.display()
    );
    let m = run_plan(&plan, &[], 3).unwrap();
    assert_eq!(m.counts.read, expected.len() as u64 + 1);
    assert_eq!(m.counts.rejected, 1, "the corrupt file, once");
    let rows = read_parquet_rows(&out.join("chunks"));
    let mut seen = BTreeMap::new();
    for r in &rows {
        let id = r["doc_id"].as_str().unwrap().to_string();
        let at = (r["source_file"].as_str().unwrap().to_string(), r["source_line"].as_u64().unwrap());
        assert!(seen.insert(id.clone(), at).is_none(), "{id} read twice");
    }
    assert_eq!(seen, expected, "every row once, numbered by its place in its file");
    let workers: std::collections::BTreeSet<String> = std::fs::read_dir(out.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy()[5..10].to_string())
        .collect();
    assert_eq!(workers.len(), 3, "every worker read row groups: {workers:?}");
    assert_eq!(m.inputs[0].files.len(), 3, "each file listed once");
}

#[test]
fn near_duplicate_clusters_are_global_across_processes() {
    let dir = tempfile::TempDir::new().unwrap();
    let tok = tokenizer(dir.path());
    // 30 originals over 2 files; each of the first 10 has 2 variants (2% of its words changed)
    // in the other file, so every cluster spans both processes.
    let mut lines = [String::new(), String::new()];
    for d in 0..30u64 {
        let base = random_words(d + 100, 300);
        lines[(d % 2) as usize] += &format!("{}\n", json_line(&format!("o{d}"), &base.join(" ")));
        for v in 0..2usize {
            if d >= 10 {
                break;
            }
            let mut w = base.clone();
            for k in 0..6 {
                w[(k * 47 + v * 11) % 300] = format!("edit{v}x{k}");
            }
            lines[((d + 1) % 2) as usize] += &format!("{}\n", json_line(&format!("o{d}v{v}"), &w.join(" ")));
        }
    }
    let input = dir.path().join("in");
    for (i, l) in lines.iter().enumerate() {
        write(&input.join(format!("part-{i}.jsonl")), l.as_bytes());
    }
    let plan = dir.path().join("near.sql");
    let text =
        plan_text("", "").replace("DEDUP ON text;", "DEDUP ON text;\nNEARDUP WITH (ngram = 3, bands = 20, rows = 5);");
    std::fs::write(&plan, text).unwrap();
    let mut kept = Vec::new();
    for (name, mut args) in [
        ("one", vec!["run".to_string(), plan.display().to_string(), "--workers".into(), "2".into()]),
        (
            "two",
            vec![
                "cluster".into(),
                "local".into(),
                "2".into(),
                plan.display().to_string(),
                "--workers".into(),
                "1".into(),
            ],
        ),
    ] {
        let out = dir.path().join(name);
        for s in [
            format!("input={}", input.display()),
            format!("output={}", out.display()),
            format!("tokenizer={}", tok.display()),
        ] {
            args.extend(["--set".to_string(), s]);
        }
        args.push("-q".into());
        run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let m = read_manifest(&out);
        assert_eq!(m["counts"]["near_duplicates"], 20, "{name}: {m}");
        let mut ids: Vec<String> = read_chunks(&out.join("chunks")).into_iter().map(|c| c.0).collect();
        ids.dedup();
        ids.sort();
        assert_eq!(ids.len(), 30, "{name}: one document per cluster");
        kept.push(ids);
    }
    assert_eq!(kept[0], kept[1], "the same documents survive on 1 and 2 processes");
}
