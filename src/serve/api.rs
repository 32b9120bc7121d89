//! The OpenAI-compatible routes of `wrapflow serve`: request checking, prompts, responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use wrapflow_operators::engine::{Finish, NameGuard, NumberGuard, Prompt, SoftStop, prompt_ids, render_chat};

use super::Served;
use super::engine::{Event, Job};

type Shared = State<Arc<Served>>;

pub(crate) fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route_layer(axum::middleware::from_fn_with_state(served.clone(), super::metrics::count))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route: see /v1/models", "not_found_error") })
        .with_state(served.clone())
        .merge(crate::metrics::router(served))
}

/// An OpenAI-style error response.
fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

/// Why a request is refused.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let kind = if self.0 == StatusCode::NOT_FOUND { "not_found_error" } else { "invalid_request_error" };
        error(self.0, &self.1, kind)
    }
}

fn bad(message: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, message.into())
}

async fn models(State(s): Shared) -> Response {
    let card =
        json!({"id": s.name, "object": "model", "created": 0, "owned_by": "wrapflow", "max_model_len": s.context});
    axum::Json(json!({"object": "list", "data": [card]})).into_response()
}

async fn chat(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    respond(s, body, true).await
}

async fn completions(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    respond(s, body, false).await
}

/// Checks the request (off the async threads: a large body takes a while to tokenize), then
/// answers it if the engine has room.
async fn respond(s: Arc<Served>, body: Result<Bytes, BytesRejection>, chat: bool) -> Response {
    // A body over the limit (413) or unreadable, as an OpenAI-style error.
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), &e.body_text(), "invalid_request_error"),
    };
    let route = if chat { "/v1/chat/completions" } else { "/v1/completions" };
    let Some(ticket) = Ticket::take(&s, route) else {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "the server's queue is full: retry later", "rate_limit_error");
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
    };
    let served = s.clone();
    let parsed = tokio::task::spawn_blocking(move || parse(&served, &body, chat)).await;
    match parsed {
        Ok(Ok(req)) => answer(s, req, chat, ticket).await,
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("checking the request: {e}"), "server_error"),
    }
}

/// A place among the requests the server holds (queued or decoding), given back when the
/// response is done or its client leaves; the request's duration is measured until then.
struct Ticket {
    served: Arc<Served>,
    route: &'static str,
    started: std::time::Instant,
}

impl Ticket {
    fn take(s: &Arc<Served>, route: &'static str) -> Option<Ticket> {
        let held = s.requests.fetch_add(1, Ordering::AcqRel);
        if held >= s.max_requests {
            s.requests.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket { served: s.clone(), route, started: std::time::Instant::now() })
    }

    /// Counts a finished request's tokens.
    fn tokens(&self, prompt: usize, completion: usize) {
        self.served.metrics.prompt_tokens.inc_by(prompt as u64);
        self.served.metrics.completion_tokens.inc_by(completion as u64);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.served.requests.fetch_sub(1, Ordering::AcqRel);
        self.served.metrics.finished(self.route, self.started);
    }
}

/// A checked request: its prompt and how to answer.
struct Req {
    stream: bool,
    include_usage: bool,
    prompt: Prompt,
}

/// Checks a request and renders its prompt.
fn parse(s: &Served, body: &[u8], chat: bool) -> Result<Req, Refused> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let v = v.as_object().ok_or_else(|| bad("the body must be a JSON object"))?;
    if let Some(m) = v.get("model").and_then(Value::as_str).filter(|m| *m != s.name) {
        let msg = format!("The model `{m}` does not exist (this server has `{}`)", s.name);
        return Err(Refused(StatusCode::NOT_FOUND, msg));
    }
    if v.get("n").is_some_and(|n| !n.is_null() && n.as_u64() != Some(1)) {
        return Err(bad("n: only 1 choice per request is supported"));
    }
    let text = if chat { chat_text(s, v)? } else { completion_text(v)? };
    let ids = prompt_ids(&s.tokenizer, s.bos_prefix, &text).map_err(|e| bad(format!("{e:#}")))?;
    let prompt = settings(s, v, ids)?;
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = v.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool);
    Ok(Req { stream, include_usage: usage.unwrap_or(false), prompt })
}

/// The prompt `ids` with the request's sampling settings, checked.
fn settings(s: &Served, v: &serde_json::Map<String, Value>, ids: Vec<u32>) -> Result<Prompt, Refused> {
    let num = |k: &str| v.get(k).filter(|x| !x.is_null());
    // Unset, a completion may use what the context leaves, up to the server's default (as
    // OpenAI-compatible servers do); asked for, it must fit.
    let room = s.context.saturating_sub(ids.len());
    let max_tokens = match num("max_completion_tokens").or(num("max_tokens")) {
        None if room == 0 => s.max_tokens,
        None => s.max_tokens.min(room),
        Some(x) => {
            let n = x.as_u64().filter(|&n| n >= 1).ok_or_else(|| bad("max_tokens must be a positive integer"))?;
            usize::try_from(n).unwrap_or(usize::MAX)
        }
    };
    let float = |k: &str, lo: f64, hi: f64, d: f64| -> Result<f32, Refused> {
        let Some(x) = num(k) else { return Ok(d as f32) };
        let f = x.as_f64().filter(|f| (lo..=hi).contains(f));
        f.map(|f| f as f32).ok_or_else(|| bad(format!("{k} must be a number in [{lo}, {hi}]")))
    };
    let int = |k: &str| -> Result<Option<u64>, Refused> {
        num(k).map(|x| x.as_u64().ok_or_else(|| bad(format!("{k} must be a non-negative integer")))).transpose()
    };
    let (temperature, top_p) = (float("temperature", 0.0, 2.0, 1.0)?, float("top_p", 0.0, 1.0, 1.0)?);
    if top_p <= 0.0 {
        return Err(bad("top_p must be more than 0"));
    }
    let stop = match num("stop") {
        None => vec![],
        Some(Value::String(x)) => vec![x.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && a.len() <= 4 => {
            a.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(_) => return Err(bad("stop must be a string or a list of up to 4 strings")),
    };
    if max_tokens > room {
        return Err(bad(format!(
            "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the \
             messages, {max_tokens} in the completion).",
            s.context,
            (ids.len() as u128) + max_tokens as u128,
            ids.len()
        )));
    }
    let (numbers, names, soft_stop) = guards(v)?;
    Ok(Prompt {
        ids,
        numbers,
        names,
        soft_stop,
        continues: continued(v),
        max_new_tokens: Some(max_tokens),
        seed: int("seed")?,
        min_new_tokens: int("min_tokens")?.unwrap_or(0) as usize,
        temperature: Some(temperature),
        top_p: Some(top_p),
        top_k: int("top_k")?.map(|k| k as usize),
        no_repeat_ngram: int("no_repeat_ngram_size")?.map(|n| n as usize),
        stop,
        ..Default::default()
    })
}

/// wrapflow's extension (`"wrapflow": {"numbers_from", "names_from", "names_allow",
/// "soft_stop"}`): decode as the rephrase stage does in process, with the number and name guards
/// over a source text (and the style's format words, which are not names) and a soft stop.
#[allow(clippy::type_complexity)]
fn guards(
    v: &serde_json::Map<String, Value>,
) -> Result<(Option<Arc<NumberGuard>>, Option<Arc<NameGuard>>, Option<SoftStop>), Refused> {
    let Some(w) = v.get("wrapflow").filter(|w| !w.is_null()) else { return Ok((None, None, None)) };
    let text = |k: &str| match w.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.as_str())),
        Some(_) => Err(bad(format!("wrapflow.{k} must be a string"))),
    };
    let numbers = text("numbers_from")?.map(|t| Arc::new(NumberGuard::new(t)));
    let allow: Vec<&str> = match w.get("names_allow") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| bad("wrapflow.names_allow holds strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("wrapflow.names_allow must be a list of words")),
    };
    let names = text("names_from")?.map(|t| Arc::new(NameGuard::new(t, &allow)));
    let soft_stop = match w.get("soft_stop") {
        None | Some(Value::Null) => None,
        Some(s) => Some(SoftStop {
            after_tokens: s
                .get("after_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("wrapflow.soft_stop.after_tokens"))? as usize,
            at: s.get("at").and_then(Value::as_str).ok_or_else(|| bad("wrapflow.soft_stop.at"))?.to_string(),
        }),
    };
    Ok((numbers, names, soft_stop))
}

/// The text the answer continues on its line (the guards read counters such as "Question 2:"
/// from it): a continued assistant message, or a completion's prompt.
fn continued(v: &serde_json::Map<String, Value>) -> String {
    if let Some(p) = v.get("prompt").and_then(Value::as_str) {
        return p.to_string();
    }
    if v.get("continue_final_message").and_then(Value::as_bool) == Some(true) {
        let last = v.get("messages").and_then(Value::as_array).and_then(|m| m.last());
        return last.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("").to_string();
    }
    String::new()
}

/// A chat request's prompt: its messages in the model's template, the assistant's turn opened
/// (or, with `continue_final_message`, the last assistant message left open to continue).
fn chat_text(s: &Served, v: &serde_json::Map<String, Value>) -> Result<String, Refused> {
    let template = s.template.as_deref().ok_or_else(|| bad("this model has no chat template: use /v1/completions"))?;
    let messages = v.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty());
    let messages = messages.ok_or_else(|| bad("messages must be a non-empty list"))?;
    let mut plain = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant", "developer"].contains(&role) {
            return Err(bad(format!("messages[{i}].role must be system, user or assistant")));
        }
        let content = match m.get("content") {
            Some(Value::String(t)) => t.clone(),
            // Content parts: the text ones, joined.
            Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
            _ => return Err(bad(format!("messages[{i}].content must be a string or a list of text parts"))),
        };
        plain.push(json!({"role": if role == "developer" { "system" } else { role }, "content": content}));
    }
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    let continues = flag("continue_final_message").unwrap_or(false);
    if continues && plain.last().and_then(|m| m["role"].as_str()) != Some("assistant") {
        return Err(bad("continue_final_message needs the last message to be the assistant's"));
    }
    let open = flag("add_generation_prompt").unwrap_or(!continues);
    if continues && open {
        return Err(bad("continue_final_message and add_generation_prompt cannot both be true"));
    }
    let last = plain.last().and_then(|m| m["content"].as_str()).unwrap_or("").to_string();
    let text = render_chat(template, &Value::Array(plain), open, &s.eos_token)
        .map_err(|e| bad(format!("chat template: {e:#}")))?;
    if !continues {
        return Ok(text);
    }
    // Cut the template's end of turn after the last message, so that the model continues it.
    match text.rfind(&last) {
        Some(at) if !last.is_empty() => Ok(text[..at + last.len()].to_string()),
        _ => Err(bad("continue_final_message: the last message's text is not in the rendered prompt")),
    }
}

fn completion_text(v: &serde_json::Map<String, Value>) -> Result<String, Refused> {
    match v.get("prompt") {
        Some(Value::String(p)) if !p.is_empty() => Ok(p.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => Ok(a[0].as_str().unwrap_or("").to_string()),
        _ => Err(bad("prompt must be a non-empty string (one prompt per request)")),
    }
}

/// Hands the request to the engine and answers, whole or as a stream.
async fn answer(s: Arc<Served>, req: Req, chat: bool, ticket: Ticket) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let job = Job { prompt: req.prompt, stream: req.stream, events: tx };
    if s.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down", "server_error");
    }
    let meta = Meta::new(&s.name, chat);
    if req.stream {
        let events = stream(rx, meta, req.include_usage, ticket);
        return axum::response::Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    }
    let answered = whole(rx, meta, &ticket).await;
    drop(ticket);
    answered
}

/// What every response of one request carries.
#[derive(Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    chat: bool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Meta {
    fn new(model: &str, chat: bool) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", if chat { "chatcmpl" } else { "cmpl" });
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Meta { id, created, model: model.to_string(), chat }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    /// A response (or stream chunk) with one choice.
    fn with(&self, chunk: bool, text: Option<&str>, finish: Option<Finish>) -> Value {
        let mut choice = json!({"index": 0, "finish_reason": finish.map(reason), "logprobs": null});
        match (self.chat, chunk) {
            (true, false) => choice["message"] = json!({"role": "assistant", "content": text.unwrap_or("")}),
            (true, true) => choice["delta"] = text.map_or(json!({}), |t| json!({"content": t})),
            (false, _) => choice["text"] = json!(text.unwrap_or("")),
        }
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": [choice]})
    }
}

fn reason(f: Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        Finish::Eos | Finish::Stop => "stop",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn whole(mut rx: UnboundedReceiver<Event>, meta: Meta, ticket: &Ticket) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta(d) => text.push_str(&d),
            Event::Done { rest, finish, prompt_tokens, completion_tokens, guarded } => {
                text.push_str(&rest);
                ticket.tokens(prompt_tokens, completion_tokens);
                let mut body = meta.with(false, Some(&text), Some(finish));
                body["usage"] = usage(prompt_tokens, completion_tokens);
                body["wrapflow"] = json!({"numbers_guarded": guarded[0], "names_guarded": guarded[1]});
                return axum::Json(body).into_response();
            }
            Event::Failed(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e, "server_error"),
        }
    }
    error(StatusCode::INTERNAL_SERVER_ERROR, "the engine stopped", "server_error")
}

/// Server-sent events: the role first (chat), then text as it is decoded, the finish reason,
/// the usage if asked for, and `[DONE]`.
fn stream(
    rx: UnboundedReceiver<Event>,
    meta: Meta,
    include_usage: bool,
    ticket: Ticket,
) -> impl Stream<Item = Result<Sse, Infallible>> {
    let mut first = meta.with(true, None, None);
    if meta.chat {
        first["choices"][0]["delta"] = json!({"role": "assistant", "content": ""});
    }
    let head: Vec<Value> = if meta.chat { vec![first] } else { vec![] };
    let state = (rx, meta, head, false, ticket);
    futures::stream::unfold(state, move |(mut rx, meta, mut queue, ended, ticket)| async move {
        if queue.is_empty() && !ended {
            queue = match rx.recv().await {
                Some(Event::Delta(d)) => vec![meta.with(true, Some(&d), None)],
                Some(Event::Done { rest, finish, prompt_tokens, completion_tokens, .. }) => {
                    ticket.tokens(prompt_tokens, completion_tokens);
                    let mut out = Vec::new();
                    if !rest.is_empty() {
                        out.push(meta.with(true, Some(&rest), None));
                    }
                    out.push(meta.with(true, None, Some(finish)));
                    if include_usage {
                        let mut u = meta.with(true, None, None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(prompt_tokens, completion_tokens);
                        out.push(u);
                    }
                    out.push(Value::Null);
                    out
                }
                Some(Event::Failed(e)) => vec![json!({"error": {"message": e, "type": "server_error"}}), Value::Null],
                // The engine is gone (it failed, or the server stops): say so before the end.
                None => vec![json!({"error": {"message": "the engine stopped", "type": "server_error"}}), Value::Null],
            };
            queue.reverse();
        }
        let next = queue.pop()?;
        let event = if next.is_null() { Sse::default().data("[DONE]") } else { Sse::default().data(next.to_string()) };
        let ended = ended || next.is_null();
        Some((Ok(event), (rx, meta, queue, ended, ticket)))
    })
}
