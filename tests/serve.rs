//! `wrapflow serve` and the remote backend together: a plan pointed at the server gives the
//! rows of the in-process run; faults between them (429 with Retry-After, 500, slow and cut
//! responses, a server down) lose no task and duplicate none; a job killed mid-run resumes
//! without asking again for what its journal holds; the API key never shows; and the `openai`
//! Python package talks to the server.

mod common;
#[path = "serve/limits.rs"]
mod limits;
#[path = "serve/metrics.rs"]
mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::crash::{input_file, wrapflow};
use serde_json::Value;
use tempfile::TempDir;
use wrapflow::operators::model::import::WeightFormat;
use wrapflow::operators::model::tiny::write_tiny_model;

const KEY: &str = "sk-test-5b1c9e0d7f2a44e1";

/// A `wrapflow serve` child process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(model: &Path) -> Server {
        Server::start_with(model, &[])
    }

    fn start_with(model: &Path, args: &[&str]) -> Server {
        let mut child = wrapflow()
            .args(["serve", "--model"])
            .arg(model)
            .args(["--port", "0", "--batch", "4", "--threads", "1", "--name", "tiny"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wrapflow serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the `n`-th request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Forward everything.
    Clean,
    /// Of every 20 requests one gets 429 with Retry-After, one 500, one is slow (past the client's
    /// timeout), one has its connection dropped mid-body; of every 17, one gets a cut body.
    Faulty,
    /// 503 to everything.
    Down,
}

/// A fault-injecting proxy on loopback in front of the server, recording each request.
struct Proxy {
    upstream: String,
    mode: Mutex<Mode>,
    n: AtomicU64,
    /// Per request: its body, the status it got (0: stalled, 1: dropped), its Authorization header.
    seen: Mutex<Vec<(String, u16, String)>>,
    cut: AtomicU64,
}

async fn forward(State(p): State<Arc<Proxy>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let n = p.n.fetch_add(1, Ordering::SeqCst);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mode = *p.mode.lock().unwrap();
    let text = String::from_utf8_lossy(&body).to_string();
    let record = |status: u16| p.seen.lock().unwrap().push((text.clone(), status, auth.clone()));
    let fault = match mode {
        Mode::Clean => None,
        Mode::Down => Some(503),
        Mode::Faulty => [(1, 429), (4, 500), (7, 0)].iter().find(|(k, _)| n % 20 == *k).map(|f| f.1),
    };
    match fault {
        Some(429) => {
            record(429);
            let body = r#"{"error":{"message":"rate limited"}}"#;
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], body).into_response();
        }
        Some(code) if code >= 500 => {
            record(code);
            return (StatusCode::from_u16(code).unwrap(), "upstream trouble").into_response();
        }
        // Slow: past the client's 2 s timeout, so it gives up and tries again.
        Some(_) => {
            record(0);
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        None => {}
    }
    let url = format!("{}{}", p.upstream.trim_end_matches("/v1"), uri.path());
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let mut bytes = resp.bytes().await.unwrap().to_vec();
    if mode == Mode::Faulty && n % 20 == 11 {
        // Dropped: the connection breaks after half the body.
        record(1);
        let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped by the proxy");
        let body = axum::body::Body::from_stream(futures::stream::iter([Ok(half), Err(broken)]));
        return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    }
    if mode == Mode::Faulty && n % 17 == 9 {
        bytes.truncate(bytes.len() / 2);
        p.cut.fetch_add(1, Ordering::SeqCst);
        record(299);
    } else if fault.is_none() {
        record(status);
    }
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], bytes).into_response()
}

/// Starts a proxy to `upstream` on a runtime of its own; returns it with its URL.
fn proxy(upstream: &str, rt: &tokio::runtime::Runtime) -> (Arc<Proxy>, String) {
    let p = Arc::new(Proxy {
        upstream: upstream.to_string(),
        mode: Mutex::new(Mode::Clean),
        n: AtomicU64::new(0),
        seen: Mutex::new(Vec::new()),
        cut: AtomicU64::new(0),
    });
    let app = axum::Router::new().fallback(forward).with_state(p.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, url)
}

/// Every gate but meaning and support (this plan has no embedder: a plan that asks for those
/// without one is refused).
const MODEL_FREE_GATES: &str = "empty,truncated,refusal,length,repetition,format,numbers,entities,copy,leak";

/// A plan with two styles of its own (one continuing an answer prefix) and the built-in `qa` and
/// `easy` (soft stops, a minimum length, every model-free gate), greedy with one sampled retry, the number
/// and name guards on, and `options` added to REPHRASE.
fn plan(dir: &Path, name: &str, model: &Path, input: &Path, options: &str) -> PathBuf {
    let text = format!(
        "PARAM output;\n\
         TOKENIZER '{model}/tokenizer.json';\n\
         CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '{input}/';\n\
         INPUT raw;\n\
         CHUNK WITH (max_tokens = 48);\n\
         STYLE echo WITH (system = 'Repeat the text.', user = '<text>\n{{chunk}}\n</text>', max_new_tokens = 10, gates = 'empty');\n\
         STYLE ask WITH (system = 'Ask about the text.', user = '{{chunk}}', answer_prefix = 'Question:', max_new_tokens = 8, gates = 'empty');\n\
         STYLE qa WITH (max_new_tokens = 24, stop_after = 0.3, gates = '{model_free}');\n\
         STYLE easy WITH (max_new_tokens = 16, stop_after = 0.2, gates = '{model_free}');\n\
         REPHRASE WITH (styles = 'echo,ask,qa,easy', batch_size = 4, temperature = 0, retries = 1, journal_rows = 1, {options});\n\
         SINK '${{output}}' WITH (shard_rows = 7);\n",
        model = model.display(),
        input = input.display(),
        model_free = MODEL_FREE_GATES,
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(plan: &Path, out: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = wrapflow();
    cmd.arg("run").arg(plan).arg("-q").arg("--set").arg(format!("output={}", out.display()));
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// Synthetic rows (document, chunk, style, text) and rejects (record, reason).
type Rows = (Vec<(String, i64, String, String)>, Vec<(String, String)>);

/// The synthetic rows and the rejects of an output, sorted.
fn rows(out: &Path) -> Rows {
    let mut synthetic: Vec<_> = common::read_parquet_rows(&out.join("synthetic"))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("doc_id"), r["chunk_index"].as_i64().unwrap(), s("style"), s("text"))
        })
        .collect();
    synthetic.sort();
    let mut rejects: Vec<_> = common::read_rejects(&out.join("rejects"))
        .iter()
        .map(|r| (r["record"].to_string(), r["reason"].to_string()))
        .collect();
    rejects.sort();
    (synthetic, rejects)
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// Every file under `dir` as text, for looking for the key.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in walk(dir) {
        out.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { files.extend(walk(&p)) } else { files.push(p) }
    }
    files
}

struct Setup {
    dir: TempDir,
    model: PathBuf,
    input: PathBuf,
}

fn setup() -> Setup {
    let dir = TempDir::new().unwrap();
    let model = dir.path().join("tiny");
    write_tiny_model(&model, 7, WeightFormat::Fp32, false).unwrap();
    // One input object: the first segment is one object, so the whole run is one segment and a
    // crash inside it leaves its journal to resume from.
    let input = dir.path().join("in");
    let all: Vec<u8> = [input_file(0), b"\n".to_vec(), input_file(1)].concat();
    common::write(&input.join("part-000.jsonl"), &all);
    Setup { dir, model, input }
}

#[test]
fn a_plan_on_wrapflow_serve_gives_the_in_process_rows_through_faults_crashes_and_outages() {
    let s = setup();
    let d = s.dir.path();
    let server = Server::start(&s.model);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, proxy_url) = proxy(&server.url, &rt);

    // In process, and on the server directly: the same rows.
    let local = plan(d, "local.sql", &s.model, &s.input, &format!("model = '{}'", s.model.display()));
    let out_local = d.join("out-local");
    let r = run(&local, &out_local, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (synthetic, rejects) = rows(&out_local);
    assert!(synthetic.len() >= 20, "{} rows", synthetic.len());
    assert!(synthetic.iter().any(|r| r.2 == "ask" && r.3.starts_with("Question:")));
    let direct = plan(d, "direct.sql", &s.model, &s.input, &format!("model = 'tiny', endpoint = '{}'", server.url));
    let out_direct = d.join("out-direct");
    let r = run(&direct, &out_direct, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(rows(&out_direct), (synthetic.clone(), rejects.clone()), "remote rows differ from in-process ones");
    let m = manifest(&out_direct);
    let model = m["rephrase"]["models"][0]["model"].as_str().unwrap_or_default().to_string();
    let lineage = common::read_parquet_rows(&out_direct.join("synthetic"));
    assert!(lineage[0]["model"].as_str().unwrap().starts_with("tiny@127.0.0.1:"), "{model} {:?}", lineage[0]["model"]);

    // A base model's way: the styles as plain few-shot text on /completions, the key from a file.
    let key_file = d.join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let opts = format!(
        "model = 'tiny', endpoint = '{}', api = 'completions', api_key_file = '{}'",
        server.url,
        key_file.display()
    );
    let completions = plan(d, "completions.sql", &s.model, &s.input, &opts);
    let out = d.join("out-completions");
    let r = run(&completions, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m = manifest(&out);
    assert_eq!(m["rephrase"]["tasks"].as_u64().unwrap() as usize, synthetic.len() + rejects.len(), "{m}");
    assert_eq!(m["rephrase"]["models"][0]["api"], "completions", "{m}");
    assert!(!rows(&out).0.is_empty());
    assert!(!all_text(&out).contains(KEY), "the key leaked into the output");

    // Through the faulty proxy, with an API key: every task is answered once, cut answers are
    // rejects with their reason, and the key shows nowhere.
    *proxy.mode.lock().unwrap() = Mode::Faulty;
    let remote_opts = format!(
        "model = 'tiny', endpoint = '{proxy_url}', timeout_s = 2, retry_budget_s = 60, concurrency = 8, api_key_env = 'WRAPFLOW_KEY'"
    );
    let faulty = plan(d, "faulty.sql", &s.model, &s.input, &remote_opts);
    let out = d.join("out-faulty");
    let r = run(&faulty, &out, &[("WRAPFLOW_KEY", KEY)]);
    let stderr = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(r.status.success(), "{stderr}");
    let m = manifest(&out);
    let (tasks, acc, rej) = (&m["rephrase"]["tasks"], &m["rephrase"]["accepted"], &m["rephrase"]["rejected"]);
    assert_eq!(tasks.as_u64().unwrap(), acc.as_u64().unwrap() + rej.as_u64().unwrap(), "{m}");
    assert_eq!(tasks.as_u64().unwrap() as usize, synthetic.len() + rejects.len());
    let (got, got_rejects) = rows(&out);
    let cut = proxy.cut.load(Ordering::SeqCst) as usize;
    assert!(cut >= 1, "the proxy cut no answer");
    // A cut first answer is a reject with its reason; a cut retry leaves the first answer.
    let cut_rejects = got_rejects.iter().filter(|r| r.1.contains("the response is not JSON")).count();
    assert!(cut_rejects >= 1 && cut_rejects <= cut, "{cut} cut, {cut_rejects} rejected for it");
    let keys: BTreeSet<_> = got.iter().map(|r| (&r.0, r.1, &r.2)).collect();
    assert_eq!(keys.len(), got.len(), "a task was answered twice");
    for row in &got {
        assert!(synthetic.contains(row), "a row the in-process run does not have: {row:?}");
    }
    let seen = proxy.seen.lock().unwrap().clone();
    for code in [429, 500, 0, 1] {
        assert!(seen.iter().any(|s| s.1 == code), "no {code} was injected");
    }
    assert!(seen.iter().all(|s| s.2 == format!("Bearer {KEY}")), "every request carries the key");
    assert!(!all_text(&out).contains(KEY) && !stderr.contains(KEY), "the key leaked into the output or the log");
    let explain =
        wrapflow().arg("explain").arg(&faulty).args(["--set", "output=x"]).env("WRAPFLOW_KEY", KEY).output().unwrap();
    let shown = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success() && shown.contains("tiny at http://127.0.0.1:"), "{shown}");
    assert!(!shown.contains(KEY));

    // Killed mid-run, resumed: no journaled task is asked for again.
    *proxy.mode.lock().unwrap() = Mode::Clean;
    proxy.seen.lock().unwrap().clear();
    let crash_opts = format!("model = 'tiny', endpoint = '{proxy_url}', concurrency = 2");
    let crashing = plan(d, "crash.sql", &s.model, &s.input, &crash_opts);
    let out = d.join("out-crash");
    let r = run(&crashing, &out, &[("WRAPFLOW_FAILPOINT", "rephrase:25")]);
    assert!(!r.status.success(), "the failpoint did not fire");
    let before: Vec<String> = proxy.seen.lock().unwrap().drain(..).map(|s| s.0).collect();
    let r = run(&crashing, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let after: BTreeSet<String> = proxy.seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    let reused = manifest(&out)["rephrase"]["journal_reused"].as_u64().unwrap() as usize;
    assert!(reused >= 10, "only {reused} answers came from the journal");
    let again = before.iter().filter(|b| after.contains(*b)).count();
    assert!(again <= before.len() - reused, "{again} asked again, {} before, {reused} journaled", before.len());
    assert_eq!(rows(&out), (synthetic.clone(), rejects.clone()), "the resumed run's rows");

    // The server down past the retry budget: the job stops, says how to resume, and resumes.
    // No more requests in flight than the server holds (8 × batch 4): a full queue's 429s would
    // spend the short budget while the server is up, and this is about an outage.
    *proxy.mode.lock().unwrap() = Mode::Down;
    let down_opts = format!("model = 'tiny', endpoint = '{proxy_url}', retry_budget_s = 2, concurrency = 8");
    let down = plan(d, "down.sql", &s.model, &s.input, &down_opts);
    let out = d.join("out-down");
    let r = run(&down, &out, &[]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "the run went on without its endpoint");
    assert!(stderr.contains("HTTP 503") && stderr.contains("run the same command again"), "{stderr}");
    *proxy.mode.lock().unwrap() = Mode::Clean;
    let r = run(&down, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(rows(&out), (synthetic, rejects), "the rows after the outage");
}

#[test]
fn the_openai_package_talks_to_wrapflow_serve() {
    let s = setup();
    let server = Server::start(&s.model);
    let python = std::env::var("WRAPFLOW_TEST_PYTHON").expect("WRAPFLOW_TEST_PYTHON is not set: run scripts/test.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai_client.py");
    let out = Command::new(python).arg(script).arg(&server.url).arg("tiny").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"], serde_json::json!(["tiny"]));
    let chat = &v["chat"];
    assert!(!chat["text"].as_str().unwrap().is_empty(), "{v}");
    assert!(chat["usage"][0].as_u64().unwrap() > 5 && chat["usage"][1].as_u64().unwrap() >= 1, "{v}");
    // Streaming gives the same greedy text, in pieces, with the same usage.
    let stream = &v["stream"];
    assert_eq!(stream["text"], chat["text"], "{v}");
    assert_eq!(stream["usage"], chat["usage"], "{v}");
    assert_eq!(stream["finish"], chat["finish"], "{v}");
    assert!(stream["pieces"].as_u64().unwrap() >= 2, "{v}");
    assert!(v["completion"]["usage"][1].as_u64().unwrap() >= 1, "{v}");
    let errors: BTreeMap<String, Value> = serde_json::from_value(v["errors"].clone()).unwrap();
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["empty", "model", "temperature"], "{v}");
    assert_eq!(errors["empty"][0], 400);
    assert_eq!(errors["model"][0], 404);
    assert_eq!(errors["temperature"][0], 400);
}

#[test]
fn sigterm_lets_the_requests_in_flight_finish() {
    let s = setup();
    let mut server = Server::start(&s.model);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("{}/chat/completions", server.url);
    let body = serde_json::json!({
        "model": "tiny", "messages": [{"role": "user", "content": "The council met."}],
        "max_tokens": 1500, "min_tokens": 1500, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}
    });
    // Three streams, each started (its first event read) before the signal.
    let mut streams: Vec<_> = (0..3)
        .map(|_| {
            let r = reqwest::Client::new().post(&url).header("content-type", "application/json").body(body.to_string());
            rt.block_on(async {
                let mut resp = r.send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let first = resp.chunk().await.unwrap().unwrap();
                (resp, String::from_utf8_lossy(&first).to_string())
            })
        })
        .collect();
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);
    for (resp, text) in &mut streams {
        while let Some(c) = rt.block_on(resp.chunk()).unwrap() {
            text.push_str(&String::from_utf8_lossy(&c));
        }
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
        let usage: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 1500, "{usage}");
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
