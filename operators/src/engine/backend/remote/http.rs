//! One request to an OpenAI-compatible API, with retries, and the reading of its answer.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

use crate::engine::backend::Answer;
use crate::engine::decode::generate::Finish;
use crate::state::metrics::Metrics;

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    Answer(Answer),
    /// The server answered, but not with a usable completion: this task fails, others go on.
    Unreadable(String),
    /// The server refused every try for the retry budget, or refused the credentials.
    Fatal(String),
}

/// A request and how to send it.
pub(super) struct Call {
    pub client: reqwest::Client,
    pub url: String,
    pub key: Option<String>,
    pub body: Value,
    /// `/chat/completions` (the answer is `message.content`) or `/completions` (`text`).
    pub chat: bool,
    pub budget: Duration,
    pub metrics: Metrics,
}

/// Why one try failed.
enum Try {
    /// Worth another try, after at least this long (the server's `Retry-After`).
    Again(String, Option<Duration>),
    Unreadable(String),
    Fatal(String),
}

impl Call {
    pub async fn run(self) -> Outcome {
        let first = Instant::now();
        let mut tries = 0u32;
        loop {
            let t0 = Instant::now();
            self.metrics.add("remote.requests", 1);
            let result = self.once().await;
            match result {
                Ok(a) => {
                    self.metrics.observe("remote.latency_s", t0.elapsed().as_secs_f64(), 120.0, 240);
                    self.metrics.add("remote.completion_tokens", a.generated_tokens as u64);
                    return Outcome::Answer(a);
                }
                Err(Try::Unreadable(why)) => return Outcome::Unreadable(why),
                Err(Try::Fatal(why)) => return Outcome::Fatal(why),
                Err(Try::Again(why, after)) => {
                    let wait = backoff(tries, after);
                    if first.elapsed() + wait > self.budget {
                        return Outcome::Fatal(format!("{why} (retried for {:.0} s)", first.elapsed().as_secs_f64()));
                    }
                    tracing::debug!("rephrase request failed ({why}); retrying in {:.1} s", wait.as_secs_f64());
                    self.metrics.add("remote.retries", 1);
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn once(&self) -> Result<Answer, Try> {
        let mut req = self.client.post(&self.url).json_body(&self.body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        // Connection errors and timeouts are worth another try; reqwest's messages carry the URL,
        // never the headers.
        let resp = req.send().await.map_err(|e| Try::Again(transport(&e), None))?;
        let status = resp.status();
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        let body =
            resp.bytes().await.map_err(|e| Try::Again(format!("reading the response: {}", transport(&e)), None))?;
        if !status.is_success() {
            let msg = error_message(&body);
            return Err(match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                    Try::Again(format!("HTTP {status}: {msg}"), retry_after)
                }
                s if s.is_server_error() => Try::Again(format!("HTTP {status}: {msg}"), retry_after),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                    Try::Fatal(format!("HTTP {status}: {msg}"))
                }
                _ => Try::Unreadable(format!("HTTP {status}: {msg}")),
            });
        }
        answer(&body, self.chat).map_err(Try::Unreadable)
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (capped at an hour).
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<f64>() {
        Ok(s) if s.is_finite() => Duration::from_secs_f64(s.max(0.0)),
        _ => httpdate::parse_http_date(v).ok()?.duration_since(std::time::SystemTime::now()).unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// JSON bodies without reqwest's `json` feature (serde_json is here anyway).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json").body(v.to_string())
    }
}

/// The wait before try `tries + 1`: 0.5 s doubling to 30 s, with full jitter over its upper half;
/// never shorter than the server's `Retry-After`.
fn backoff(tries: u32, after: Option<Duration>) -> Duration {
    let cap = (0.5 * 2f64.powi(tries.min(6) as i32)).min(30.0);
    let jittered = cap * rand::rng().random_range(0.5..=1.0);
    Duration::from_secs_f64(jittered).max(after.unwrap_or_default())
}

fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    // The error's own text, without the URL (which may carry credentials).
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

/// The message of an OpenAI-style error body, or the start of the body.
fn error_message(body: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let msg = v.as_ref().and_then(|v| v.pointer("/error/message").or(v.get("message")).or(v.get("detail")));
    match msg {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Reads a completion: the first choice's text, why it ended and the token counts.
pub fn answer(body: &[u8], chat: bool) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the response is not JSON ({e})"))?;
    let choice = v.pointer("/choices/0").ok_or("the response has no choices")?;
    let text = if chat { choice.pointer("/message/content") } else { choice.get("text") };
    let text = text.and_then(Value::as_str).ok_or("the response's first choice has no text")?;
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => Finish::Length,
        Some("stop") | Some("eos") => Finish::Eos,
        Some(other) => return Err(format!("the response ended with finish_reason {other:?}")),
        None => return Err("the response has no finish_reason".into()),
    };
    let count = |k: &str| v.pointer(k).and_then(Value::as_u64).map_or(0, |n| n as u32);
    Ok(Answer {
        text: text.to_string(),
        finish,
        prompt_tokens: count("/usage/prompt_tokens"),
        generated_tokens: count("/usage/completion_tokens"),
        // What the guards did, from a server that ran them (`wrapflow serve`).
        guarded: count("/wrapflow/numbers_guarded"),
        names_guarded: count("/wrapflow/names_guarded"),
        checked_out: false,
    })
}

/// An endpoint URL as it may be shown: without user and password.
pub fn endpoint_display(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_read_and_broken_ones_are_refused_with_a_reason() {
        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],
                        "usage":{"prompt_tokens":7,"completion_tokens":2}}"#;
        let a = answer(chat, true).unwrap();
        assert_eq!((a.text.as_str(), a.finish, a.prompt_tokens, a.generated_tokens), ("Hi.", Finish::Eos, 7, 2));
        let text = br#"{"choices":[{"text":"more","finish_reason":"length"}]}"#;
        assert_eq!(answer(text, false).unwrap().finish, Finish::Length);
        assert!(answer(&chat[..40], true).unwrap_err().contains("not JSON"));
        assert!(answer(br#"{"choices":[]}"#, true).unwrap_err().contains("no choices"));
        assert!(answer(br#"{"choices":[{"message":{}}]}"#, true).unwrap_err().contains("no text"));
        assert!(answer(br#"{"choices":[{"text":"x"}]}"#, false).unwrap_err().contains("finish_reason"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        for t in 0..10 {
            let w = backoff(t, None).as_secs_f64();
            let cap = (0.5 * 2f64.powi(t.min(6) as i32)).min(30.0);
            assert!(w >= cap * 0.5 && w <= cap, "try {t}: {w}");
        }
        assert!(backoff(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(retry_after(" 2 "), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date gone by");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn endpoints_are_shown_without_credentials() {
        assert_eq!(endpoint_display("https://bob:hunter22@api.example.com/v1/"), "https://api.example.com/v1");
        assert_eq!(error_message(br#"{"error":{"message":"slow down"}}"#), "slow down");
    }
}
