//! `wrapflow serve`'s `/metrics` read with `prometheus_client`'s parser after a few requests:
//! requests by route and status, their durations, tokens and the queue; `/health` answers.

use serde_json::json;

use super::common::{get, parse_scrapes};
use super::limits::post;
use super::{Server, setup};

#[test]
fn serve_counts_requests_latency_and_tokens_for_prometheus() {
    let s = setup();
    let server = Server::start(&s.model);
    let chat = format!("{}/chat/completions", server.url);
    let root = server.url.trim_end_matches("/v1");
    let ask = |stream: bool| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "The council met."}],
               "max_tokens": 6, "temperature": 0, "stream": stream})
    };
    let mut completion = 0;
    for _ in 0..3 {
        let (status, _, body) = post(&chat, &ask(false));
        assert_eq!(status, 200, "{body}");
        completion += body["usage"]["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(post(&chat, &ask(true)).0, 200, "a streamed answer");
    assert_eq!(post(&chat, &json!({"model": "tiny", "messages": "not a list"})).0, 400);
    assert_eq!(get(&format!("{root}/health")), Some((200, "ready\n".to_string())));
    let (status, text) = get(&format!("{root}/metrics")).unwrap();
    assert_eq!(status, 200);
    let dir = tempfile::TempDir::new().unwrap();
    let m = &parse_scrapes(dir.path(), &[text])[0];
    let route = "route=/v1/chat/completions";
    assert_eq!(m[&format!("wrapflow_serve_requests_total{{code=200,{route}}}")], 4.0, "{m}");
    assert_eq!(m[&format!("wrapflow_serve_requests_total{{code=400,{route}}}")], 1.0, "{m}");
    assert_eq!(m[&format!("wrapflow_serve_request_duration_seconds_count{{{route}}}")], 5.0, "{m}");
    assert!(m[&format!("wrapflow_serve_request_duration_seconds_sum{{{route}}}")].as_f64().unwrap() > 0.0);
    assert_eq!(m[&format!("wrapflow_serve_request_duration_seconds_bucket{{le=+Inf,{route}}}")], 5.0, "{m}");
    // The streamed request generated tokens too: at least the three whole answers' count.
    assert!(m["wrapflow_serve_completion_tokens_total"].as_f64().unwrap() >= completion as f64, "{m}");
    assert!(m["wrapflow_serve_prompt_tokens_total"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(
        (m["wrapflow_serve_requests_held"].as_f64(), m["wrapflow_serve_max_requests"].as_f64().is_some()),
        (Some(0.0), true)
    );
}
