//! `wrapflow serve` under hostile or careless clients: clients that leave stop their decoding,
//! the queue is bounded (429 with Retry-After), idle and slow connections are dropped and
//! capped, oversized bodies get a JSON 413, and hostile numbers get a 400.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, setup};

/// CPU seconds the process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

pub fn post(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_string());
        let resp = r.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let bytes = resp.bytes().await.unwrap_or_default();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    })
}

fn long_stream() -> Value {
    json!({
        "model": "tiny", "messages": [{"role": "user", "content": "The council met."}],
        "max_tokens": 1900, "min_tokens": 1900, "temperature": 0, "stream": true
    })
}

#[test]
fn clients_that_leave_stop_their_decoding_and_the_queue_is_bounded() {
    let s = setup();
    let server = Server::start_with(&s.model, &["--max-requests", "24"]);
    let url = format!("{}/chat/completions", server.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 24 long streams fill the server (4 decode, 20 wait): seconds of work for the tiny model.
    let streams: Vec<_> = (0..24)
        .map(|_| {
            let r = reqwest::Client::new().post(&url).header("content-type", "application/json");
            rt.block_on(async {
                let mut resp = r.body(long_stream().to_string()).send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                resp.chunk().await.unwrap().unwrap();
                resp
            })
        })
        .collect();
    // One more is refused at once, as OpenAI's API refuses, with when to retry.
    let (status, headers, body) = post(&url, &long_stream());
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // The server is busy decoding them...
    let pid = server.child.id();
    let c0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let busy = cpu_seconds(pid) - c0;
    assert!(busy > 0.25, "the server used {busy:.2} CPU s in 1.5 s while decoding");
    // ...until their clients leave: then it stops, and takes requests again.
    drop(streams);
    std::thread::sleep(Duration::from_millis(500));
    let c1 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let idle = cpu_seconds(pid) - c1;
    assert!(idle < 0.2, "the server used {idle:.2} CPU s in 1.5 s after every client left");
    let short = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4});
    let t0 = Instant::now();
    let (status, _, body) = post(&url, &short);
    assert_eq!(status, 200, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5), "a 4-token request took {:?}", t0.elapsed());
}

#[test]
fn hostile_numbers_and_bodies_get_openai_style_errors() {
    let s = setup();
    let server = Server::start(&s.model);
    let url = format!("{}/chat/completions", server.url);
    let msgs = json!([{"role": "user", "content": "The council met."}]);
    for (field, value) in [
        ("max_tokens", json!(u64::MAX)),
        ("max_tokens", json!(2049)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-1)),
        ("n", json!(1.5)),
        ("n", json!("2")),
        ("n", json!(2)),
        ("temperature", json!(1e308)),
    ] {
        let (status, _, body) = post(&url, &json!({"model": "tiny", "messages": msgs, field: value}));
        assert_eq!(status, 400, "{field} = {value}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{field} = {value}: {body}");
    }
    // Without max_tokens, a long prompt gets what the context leaves (2,048 tokens in all), not
    // a 400 for the server's default of 512.
    let long = "The council met again. ".repeat(145);
    let body =
        json!({"model": "tiny", "messages": [{"role": "user", "content": long}], "temperature": 0, "min_tokens": 4000});
    let (status, _, body) = post(&url, &body);
    assert_eq!(status, 200, "{body}");
    let (prompt, completion) =
        (body["usage"]["prompt_tokens"].as_u64().unwrap(), body["usage"]["completion_tokens"].as_u64());
    assert!((1536..2048).contains(&prompt), "the prompt must leave less than 512 tokens: {body}");
    assert_eq!(completion, Some(2048 - prompt), "{body}");
    // A body over the limit is a JSON 413.
    let huge = json!({"model": "tiny", "messages": [{"role": "user", "content": "x".repeat(3 << 20)}]});
    let (status, _, body) = post(&url, &huge);
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // Eight 1 MB bodies at once are checked off the async threads: `/v1/models` still answers
    // at once meanwhile.
    let words = "the council met again ".repeat(1 << 20 >> 5);
    let big = json!({"model": "tiny", "messages": [{"role": "user", "content": words}]});
    let senders: Vec<_> = (0..8)
        .map(|_| (url.clone(), big.clone()))
        .map(|(u, b)| std::thread::spawn(move || (post(&u, &b).0, Instant::now())))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    let models = rt.block_on(async { reqwest::get(format!("{}/models", server.url)).await.unwrap().status() });
    let (waited, answered) = (t0.elapsed(), Instant::now());
    let (codes, done): (Vec<u16>, Vec<Instant>) = senders.into_iter().map(|h| h.join().unwrap()).unzip();
    assert_eq!(models, 200);
    assert!(done.iter().any(|d| *d > answered), "a large body was still being checked when /v1/models answered");
    assert!(waited < Duration::from_millis(500), "/v1/models waited {waited:?} behind 8 large bodies");
    assert!(codes.iter().all(|c| *c == 400 || *c == 429), "too long for the context, or the queue is full: {codes:?}");
    eprintln!("/v1/models answered in {waited:?} while 8 bodies of 1 MB were checked ({codes:?})");
    // The server is still there.
    let (status, _, body) = post(&url, &json!({"model": "tiny", "messages": msgs, "max_tokens": 2}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn idle_and_slow_connections_are_dropped_and_capped() {
    let s = setup();
    let server = Server::start_with(&s.model, &["--max-connections", "2", "--header-timeout-s", "2"]);
    let addr = server.url.trim_start_matches("http://").trim_end_matches("/v1").to_string();
    // Two clients that never finish their headers hold every connection...
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // ...so a third waits, and is served once the server has dropped them.
    let t0 = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let models = rt.block_on(async { reqwest::get(format!("{}/models", server.url)).await.unwrap().status() });
    let waited = t0.elapsed();
    assert_eq!(models.as_u16(), 200);
    assert!(waited > Duration::from_millis(1500) && waited < Duration::from_secs(10), "{waited:?}");
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        // The server answers 408 or just closes: either way the connection ends.
        let read = c.read_to_end(&mut buf);
        assert!(read.is_ok(), "the slow connection was not closed: {read:?}");
    }
}
