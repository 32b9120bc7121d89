//! Parser of wrapflow's own plan statements (everything that is not DataFusion SQL):
//!
//! ```text
//! PARAM name [DEFAULT literal] [SECRET]
//! TOKENIZER 'path/to/tokenizer.json'
//! INPUT relation
//! DEDUP ON sql_expression
//! NEARDUP [WITH (key = value, ...)]
//! CHUNK [WITH (key = value, ...)]
//! STYLE name [WITH (key = value, ...)]
//! REPHRASE [WITH (key = value, ...)]
//! GATES [WITH (key = value, ...)]
//! SINK 'url' [WITH (key = value, ...)]
//! MIX name [WITH (key = value, ...)]
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde::de::DeserializeOwned;
use serde_json::Value;
use wrapflow_operators::io::store::is_store_option;
use wrapflow_operators::stages::dedup::near::NearDupConfig;
use wrapflow_operators::stages::gates::GateConfig;
use wrapflow_operators::{ChunkConfig, MixConfig, SinkConfig};

pub use super::rephrase::{BackendConfig, RephraseSpec};
use super::text::{offset_of, unclosed_quote};

/// Keywords that start a wrapflow statement.
pub const KEYWORDS: [&str; 12] =
    ["PARAM", "TOKENIZER", "INPUT", "DEDUP", "NEARDUP", "STAGE", "CHUNK", "STYLE", "REPHRASE", "GATES", "SINK", "MIX"];

/// A parsed wrapflow statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Param {
        name: String,
        default: Option<String>,
        /// Its value is a credential: redacted everywhere ([`crate::plan::secrets`]).
        secret: bool,
    },
    Tokenizer(String),
    Input(String),
    Dedup {
        expr: String,
    },
    Chunk(ChunkConfig),
    NearDup(NearDupConfig),
    /// A stage of the registry ([`wrapflow_operators::stages::named_stage`]).
    Named {
        name: String,
        options: Value,
    },
    /// A plan-defined style, or changes to a built-in one (resolved by the plan).
    Style {
        name: String,
        options: serde_json::Map<String, Value>,
    },
    Rephrase(RephraseSpec),
    Gates(GateConfig),
    /// A training mixture, written beside the other outputs.
    Mix {
        name: String,
        config: MixConfig,
    },
    Sink {
        url: String,
        config: SinkConfig,
        store: BTreeMap<String, String>,
        card: crate::plan::CardSpec,
    },
}

/// An error at a byte offset of the statement.
pub type StageError = (usize, String);

struct Cursor<'a> {
    text: &'a str,
    toks: Vec<(usize, Token)>,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Result<Self, StageError> {
        let toks: Vec<TokenWithSpan> =
            Tokenizer::new(&GenericDialect {}, text).tokenize_with_location().map_err(|e| {
                // The tokenizer stops where the text ends; the mistake is the quote that never closes.
                match unclosed_quote(text) {
                    Some(at) => (at, "unterminated string: this quote is never closed".to_string()),
                    None => (offset_of(text, e.location.line as usize, e.location.column as usize), e.message),
                }
            })?;
        let toks = toks
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .map(|t| (offset_of(text, t.span.start.line as usize, t.span.start.column as usize), t.token))
            .collect();
        Ok(Cursor { text, toks, i: 0 })
    }

    fn at(&self) -> usize {
        self.toks.get(self.i).map_or(self.text.len(), |t| t.0)
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i).map(|t| &t.1)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).map(|t| t.1.clone());
        self.i += 1;
        t
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, StageError> {
        Err((self.at(), msg.into()))
    }

    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, StageError> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.i += 1;
                Ok(v)
            }
            _ => self.err(format!("expected {what}")),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, StageError> {
        match self.peek() {
            Some(Token::SingleQuotedString(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => self.err(format!("expected {what} as a quoted string")),
        }
    }

    fn literal(&mut self) -> Result<Value, StageError> {
        // A leading minus belongs to the number that follows it.
        let negative = matches!(self.peek(), Some(Token::Minus));
        if negative {
            self.i += 1;
            if !matches!(self.peek(), Some(Token::Number(..))) {
                return self.err("expected a number after `-`");
            }
        }
        let v = match self.peek() {
            // E'...' takes backslash escapes (`\n`): handy for prompt templates.
            Some(Token::SingleQuotedString(s)) | Some(Token::EscapedStringLiteral(s)) => Value::String(s.clone()),
            Some(Token::Number(n, _)) if negative => {
                n.parse::<f64>().map(|x| Value::from(-x)).map_err(|_| (self.at(), format!("bad number -{n}")))?
            }
            Some(Token::Number(n, _)) => n
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| n.parse::<f64>().map(Value::from))
                .map_err(|_| (self.at(), format!("bad number {n}")))?,
            Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token::Word(w)) => Value::String(w.value.clone()),
            _ => return self.err("expected a value: 'string', number, true/false or a name"),
        };
        self.i += 1;
        Ok(v)
    }

    /// `WITH (key = value, ...)`, or nothing; with the offset of each key.
    fn options(&mut self) -> Result<Options, StageError> {
        let mut map = serde_json::Map::new();
        let mut at = BTreeMap::new();
        if !self.keyword("WITH") {
            return Ok(Options { map, at });
        }
        if self.next() != Some(Token::LParen) {
            self.i -= 1;
            return self.err("expected `(` after WITH");
        }
        loop {
            if self.peek() == Some(&Token::RParen) {
                self.i += 1;
                break;
            }
            let key_at = self.at();
            let key = self.ident("an option name")?.to_lowercase();
            if self.next() != Some(Token::Eq) {
                self.i -= 1;
                return self.err(format!("expected `=` after option {key}"));
            }
            let value = self.literal()?;
            if map.insert(key.clone(), value).is_some() {
                return Err((key_at, format!("option {key} given twice")));
            }
            at.insert(key, key_at);
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::RParen) => break,
                _ => {
                    self.i -= 1;
                    return self.err("expected `,` or `)` in the option list");
                }
            }
        }
        Ok(Options { map, at })
    }

    fn end(&self) -> Result<(), StageError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => self.err(format!("unexpected `{t}`")),
        }
    }
}

/// Options of a statement and where each key was written.
struct Options {
    map: serde_json::Map<String, Value>,
    at: BTreeMap<String, usize>,
}

/// Deserializes options into a stage config; an error points at the key it names, if any.
fn config<T: DeserializeOwned>(at: usize, stage: &str, opts: Options) -> Result<T, StageError> {
    serde_json::from_value(Value::Object(opts.map)).map_err(|e| {
        let msg = e.to_string();
        let named = msg.split('`').nth(1).and_then(|k| opts.at.get(k)).copied();
        (named.unwrap_or(at), format!("{stage}: {msg}"))
    })
}

fn value_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Parses one wrapflow statement (its text, without the `;`).
pub fn parse_stage(text: &str) -> Result<Stage, StageError> {
    let mut c = Cursor::new(text)?;
    let kw = c.ident("a statement")?.to_uppercase();
    let stage = match kw.as_str() {
        "PARAM" => {
            let name = c.ident("a parameter name")?;
            let mut secret = c.keyword("SECRET");
            let default = if c.keyword("DEFAULT") { Some(value_string(c.literal()?)) } else { None };
            secret |= c.keyword("SECRET");
            Stage::Param { name, default, secret }
        }
        "TOKENIZER" => Stage::Tokenizer(c.string("the tokenizer.json path")?),
        "INPUT" => Stage::Input(c.ident("the name of a table or view")?),
        "DEDUP" => {
            if !c.keyword("ON") {
                return c.err("expected `ON expression`, e.g. DEDUP ON text");
            }
            let expr = text[c.at()..].trim().to_string();
            if expr.is_empty() {
                return c.err("expected an expression after DEDUP ON");
            }
            return Ok(Stage::Dedup { expr });
        }
        "CHUNK" => {
            let at = c.at();
            Stage::Chunk(config(at, "CHUNK", c.options()?)?)
        }
        "NEARDUP" => {
            let at = c.at();
            let cfg: NearDupConfig = config(at, "NEARDUP", c.options()?)?;
            cfg.check().map_err(|m| (at, format!("NEARDUP: {m}")))?;
            Stage::NearDup(cfg)
        }
        "STAGE" => {
            let (at, name) = (c.at(), c.ident("a stage name")?);
            let options = Value::Object(c.options()?.map);
            let stage = wrapflow_operators::stages::named_stage(&name).map_err(|m| (at, m))?;
            (stage.check)(&options).map_err(|m| (at, format!("STAGE {name}: {m}")))?;
            Stage::Named { name, options }
        }
        "STYLE" => {
            let name = c.ident("a style name")?;
            let mut options = c.options()?.map;
            // `gates = 'length, numbers'` is a list.
            if let Some(Value::String(g)) = options.get("gates").cloned() {
                let list: Vec<Value> =
                    g.split(',').map(|x| Value::String(x.trim().to_string())).filter(|x| x != "").collect();
                options.insert("gates".into(), Value::Array(list));
            }
            // `examples = '[{"chunk": "...", "answer": "..."}]'` is JSON in a string.
            if let Some(Value::String(e)) = options.get("examples").cloned() {
                let list: Value =
                    serde_json::from_str(&e).map_err(|err| (c.at(), format!("STYLE {name}: examples: {err}")))?;
                options.insert("examples".into(), list);
            }
            Stage::Style { name, options }
        }
        "REPHRASE" => {
            let at = c.at();
            Stage::Rephrase(config(at, "REPHRASE", c.options()?)?)
        }
        "GATES" => {
            let at = c.at();
            Stage::Gates(config(at, "GATES", c.options()?)?)
        }
        "MIX" => {
            let name = c.ident("a mixture name")?;
            let at = c.at();
            Stage::Mix { name, config: config(at, "MIX", c.options()?)? }
        }
        "SINK" => {
            let url = c.string("the output location")?;
            let at = c.at();
            let mut opts = c.options()?;
            let store: BTreeMap<String, String> = opts
                .map
                .iter()
                .filter(|(k, _)| is_store_option(k))
                .map(|(k, v)| (k.clone(), value_string(v.clone())))
                .collect();
            opts.map.retain(|k, _| !is_store_option(k));
            let card = Options {
                map: opts
                    .map
                    .iter()
                    .filter(|(k, _)| crate::plan::CardSpec::OPTIONS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                at: opts.at.clone(),
            };
            opts.map.retain(|k, _| !crate::plan::CardSpec::OPTIONS.contains(&k.as_str()));
            Stage::Sink { url, config: config(at, "SINK", opts)?, store, card: config(at, "SINK", card)? }
        }
        other => return Err((0, format!("unknown statement {other}"))),
    };
    c.end()?;
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_statement() {
        assert_eq!(
            parse_stage("PARAM limit DEFAULT 100").unwrap(),
            Stage::Param { name: "limit".into(), default: Some("100".into()), secret: false }
        );
        assert_eq!(parse_stage("INPUT docs").unwrap(), Stage::Input("docs".into()));
        assert_eq!(
            parse_stage("DEDUP ON lower(trim(text))").unwrap(),
            Stage::Dedup { expr: "lower(trim(text))".into() }
        );
        let Stage::Chunk(cfg) = parse_stage("CHUNK WITH (max_tokens = 64, min_fill = 0.25)").unwrap() else { panic!() };
        assert_eq!((cfg.max_tokens, cfg.min_fill), (64, 0.25));
        let Stage::Sink { url, config, store, .. } =
            parse_stage("SINK 's3://b/o' WITH (format = jsonl, shard_rows = 10, aws_allow_http = true)").unwrap()
        else {
            panic!()
        };
        assert_eq!(url, "s3://b/o");
        assert_eq!(config.shard_rows, 10);
        assert_eq!(store.get("aws_allow_http").map(String::as_str), Some("true"));
        let Stage::Style { options, .. } = parse_stage("STYLE easy WITH (register = -2.5, rate = 1)").unwrap() else {
            panic!()
        };
        assert_eq!(options["register"], -2.5);
        assert!(parse_stage("STYLE easy WITH (register = - x)").unwrap_err().1.contains("number after `-`"));
        let stmt = r#"STYLE qa WITH (examples = '[{"chunk": "It rained.", "answer": "Question: What happened?\nAnswer: It rained."}]')"#;
        let Stage::Style { options, .. } = parse_stage(stmt).unwrap() else { panic!() };
        assert_eq!(options["examples"][0]["chunk"], "It rained.");
        assert!(parse_stage("STYLE qa WITH (examples = '[{')").unwrap_err().1.contains("examples"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let (at, msg) = parse_stage("CHUNK WITH (max_tokenz = 3)").unwrap_err();
        assert!(msg.contains("unknown field `max_tokenz`"), "{msg}");
        assert_eq!(at, 12);
        let (at, msg) = parse_stage("CHUNK WITH (max_tokens = 'many')").unwrap_err();
        assert!(msg.contains("invalid type"), "{msg}");
        assert_eq!(at, 6);
        let (at, msg) = parse_stage("SINK out").unwrap_err();
        assert_eq!(at, 5);
        assert!(msg.contains("quoted string"));
        let (at, msg) = parse_stage("SINK 'out WITH (shard_rows = 1)").unwrap_err();
        assert_eq!((at, msg.as_str()), (5, "unterminated string: this quote is never closed"));
        let (at, msg) = parse_stage("CHUNK WITH (max_tokens = 3 x)").unwrap_err();
        assert_eq!((at, msg.as_str()), (27, "expected `,` or `)` in the option list"));
        assert!(parse_stage("INPUT a b").unwrap_err().1.contains("unexpected"));
    }
}
