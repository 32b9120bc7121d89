//! `wrapflow run --follow --metrics ADDR`: scraped while it runs and read with
//! `prometheus_client`'s parser, the input lag rises when input lands and falls as it is read,
//! and the counts follow; `/health` answers.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::crash::write_inputs as crash_inputs;
use super::common::s3::free_port;
use super::common::{get, parse_scrapes};
use super::{chunk_plan, sigterm, wrapflow};

/// A value of a scrape's text, read line by line (to steer the test; the assertions use the parser).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_followed_job_shows_its_lag_rise_and_fall_to_a_prometheus_scrape() {
    let dir = tempfile::TempDir::new().unwrap();
    let input = dir.path().join("in");
    crash_inputs(&input, 0, 1);
    let plan = chunk_plan(dir.path(), &input);
    let out = dir.path().join("out");
    let addr = format!("127.0.0.1:{}", free_port());
    let start = || {
        wrapflow()
            .args(["run", plan.to_str().unwrap(), "-q", "--follow", "--poll", "100ms", "--checkpoint-files", "1"])
            .args(["--metrics", &addr, "--set", &format!("output={}", out.display())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut job = start();
    let metrics = format!("http://{addr}/metrics");
    let mut scrapes: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Scrapes until `done` holds for the latest one.
    let scrape_until = |scrapes: &mut Vec<String>, done: &dyn Fn(&str) -> bool| loop {
        assert!(Instant::now() < deadline, "timed out; last scrape:\n{}", scrapes.last().cloned().unwrap_or_default());
        if let Some((200, text)) = get(&metrics) {
            let stop = done(&text);
            scrapes.push(text);
            if stop {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The first file is read, then 30 land at once (each its own checkpoint segment).
    scrape_until(&mut scrapes, &|t| {
        value(t, "wrapflow_documents_total") == Some(4.0) && value(t, "wrapflow_input_lag_files") == Some(0.0)
    });
    let before = scrapes.len();
    crash_inputs(&input, 1, 30);
    let consumed = |n: u64| {
        let m: Option<Value> =
            std::fs::read(out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        m.is_some_and(|m| m["job"]["input_files"].as_u64() == Some(n))
    };
    scrape_until(&mut scrapes, &|t| value(t, "wrapflow_input_lag_files") == Some(0.0) && consumed(31));
    // One more scrape after the last commit.
    scrape_until(&mut scrapes, &|_| true);
    let health = get(&format!("http://{addr}/health")).unwrap();
    assert_eq!(health, (200, "ready\n".to_string()));
    assert_eq!(sigterm(&mut job).code(), Some(130));

    let parsed = parse_scrapes(dir.path(), &scrapes);
    let lag: Vec<f64> = parsed.iter().map(|s| s["wrapflow_input_lag_files"].as_f64().unwrap()).collect();
    let docs: Vec<f64> = parsed.iter().map(|s| s["wrapflow_documents_total"].as_f64().unwrap()).collect();
    let top = lag[before..].iter().cloned().fold(0.0, f64::max);
    assert_eq!(lag[before - 1], 0.0, "no lag once the first file is read: {lag:?}");
    assert!(top >= 10.0, "the lag rose when 30 files landed: {lag:?}");
    let peak = before + lag[before..].iter().position(|l| *l == top).unwrap();
    assert!(lag[peak..].windows(2).all(|w| w[1] <= w[0]), "and fell as they were read: {lag:?}");
    let m: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let rows = m["counts"]["read"].as_f64().unwrap() - m["counts"]["rejected"].as_f64().unwrap();
    assert!(docs.windows(2).all(|w| w[1] >= w[0]) && *docs.last().unwrap() == rows, "{docs:?} to {rows}");
    let last = parsed.last().unwrap();
    assert_eq!(last["wrapflow_chunks_total"].as_f64(), m["counts"]["chunks"].as_f64(), "{last}");
    assert!(last["wrapflow_checkpoints_total"].as_f64().unwrap() >= 31.0, "{last}");
    assert!(last["wrapflow_last_checkpoint_age_seconds"].as_f64().unwrap() < 60.0, "{last}");
    assert!(last["wrapflow_input_read_bytes_total"].as_f64().unwrap() > 0.0, "{last}");

    // Resumed, the counts go on from the checkpoint (nothing new to read).
    let mut again = start();
    let mut resumed = Vec::new();
    scrape_until(&mut resumed, &|t| value(t, "wrapflow_checkpoints_total").is_some());
    assert_eq!(sigterm(&mut again).code(), Some(130));
    let first = &parse_scrapes(dir.path(), &resumed)[0];
    assert_eq!(first["wrapflow_documents_total"].as_f64(), Some(rows), "{first}");
    // The bytes of the objects done (the live count follows readers' positions, so may be less).
    let on_disk: u64 = std::fs::read_dir(&input).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(first["wrapflow_input_read_bytes_total"].as_f64(), Some(on_disk as f64), "{first}");
    assert!(last["wrapflow_input_read_bytes_total"].as_f64().unwrap() <= on_disk as f64, "{last}");
}
