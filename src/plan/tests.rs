//! Tests of plan parsing: statements, parameters, positions of errors, styles, mixtures.
use super::*;

const PLAN: &str = "PARAM input DEFAULT 'data';\nPARAM output;\nTOKENIZER 'tok.json';\n\
CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '${input}';\n\
CREATE VIEW docs AS SELECT * FROM raw WHERE word_count(text) > 3;\n\
INPUT docs;\nDEDUP ON lower(text);\nCHUNK WITH (max_tokens = 100);\nSINK '${output}';\n";

fn sets(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn parses_a_full_plan() {
    let p = Plan::parse("p.sql", PLAN, &sets(&[("output", "out")])).unwrap();
    assert_eq!(p.params["input"], "data");
    assert_eq!(p.sql.len(), 2);
    assert!(p.sql[0].sub.text.contains("LOCATION 'data'"));
    assert_eq!(p.input.0, InputSpec::Relation("docs".into()));
    assert_eq!(p.chunk.0.max_tokens, 100);
    assert_eq!(p.chunk.0.tokenizer.as_deref(), Some("tok.json"));
    assert_eq!(p.sink.0.url, "out");
    assert!(p.input_query().contains("CAST((lower(text)) AS VARCHAR) AS __wrapflow_dedup_key FROM docs"));
    assert!(p.hash.starts_with("blake3:"));
}

#[test]
fn errors_name_file_line_and_column() {
    let e = Plan::parse("p.sql", PLAN, &[]).unwrap_err();
    assert_eq!(e.to_string().split(": ").next(), Some("p.sql:9:7"), "{e}");
    assert!(e.message.contains("parameter `output` has no value"));
    let e = Plan::parse("p.sql", PLAN, &sets(&[("outptu", "x")])).unwrap_err();
    assert!(e.message.contains("no parameter `outptu`"), "{e}");
    let bad = PLAN.replace("max_tokens = 100", "max_tokens = 100,, x");
    let e = Plan::parse("p.sql", &bad, &sets(&[("output", "o")])).unwrap_err();
    assert_eq!(e.pos, Some(Pos { line: 8, col: 30 }), "{e}");
    let e = Plan::parse("p.sql", &PLAN.replace("INPUT docs;", ""), &sets(&[("output", "o")])).unwrap_err();
    assert!(e.message.contains("no input"), "{e}");
    let e = Plan::parse("p.sql", &format!("{PLAN}CHUNK;"), &sets(&[("output", "o")])).unwrap_err();
    assert_eq!((e.pos.unwrap().line, e.message.as_str()), (10, "CHUNK appears twice"));
}

#[test]
fn two_rephrases_each_write_their_own_styles() {
    let o = sets(&[("output", "o")]);
    let two = format!(
        "{PLAN}REPHRASE WITH (model = 'a', styles = 'easy,qa', seed = 3);\nREPHRASE WITH (model = 'b', styles = 'hard', endpoint = 'http://h/v1');\n"
    );
    let p = Plan::parse("p.sql", &two, &o).unwrap();
    let names = |styles: &[Style]| styles.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&p.styles), ["easy", "qa", "hard"], "REPHRASE after REPHRASE");
    assert_eq!((p.rephrase[0].0.model.as_str(), p.rephrase[1].0.model.as_str()), ("a", "b"));
    assert_eq!(names(&p.styles_of(&p.rephrase[0].0)), ["easy", "qa"]);
    assert_eq!(names(&p.styles_of(&p.rephrase[1].0)), ["hard"]);
    // A style has one model: its rows, journal entries and mixture shares name it.
    let e = Plan::parse("p.sql", &two.replace("'hard'", "'hard,qa'"), &o).unwrap_err();
    assert!(e.message.contains("style `qa` is rephrased by an earlier REPHRASE"), "{e}");
    assert_eq!(e.pos.unwrap().line, 11, "at the second REPHRASE");
    let e = Plan::parse("p.sql", &two.replace("endpoint = 'http://h/v1'", "temperature = -1"), &o).unwrap_err();
    assert_eq!((e.pos.unwrap().line, e.message.contains("temperature -1")), (11, true), "{e}");
    // Context-aware decoding runs in process only; a server's REPHRASE refuses it.
    let e = Plan::parse("p.sql", &two.replace("'hard'", "'hard', context_weight = 1"), &o).unwrap_err();
    assert_eq!((e.pos.unwrap().line, e.message.contains("context_weight needs the model in this process")), (11, true));
    let e = Plan::parse("p.sql", &two.replace("seed = 3", "seed = 3, context_weight = -0.5"), &o).unwrap_err();
    assert_eq!((e.pos.unwrap().line, e.message.contains("context_weight -0.5")), (10, true), "{e}");
    let local = two.replace("seed = 3", "seed = 3, context_weight = 0.5");
    assert_eq!(Plan::parse("p.sql", &local, &o).unwrap().rephrase[0].0.context_weight, 0.5);
}

#[test]
fn rephrase_styles_resolve_and_errors_point_at_them() {
    let o = sets(&[("output", "o")]);
    let wrap = format!(
        "{PLAN}STYLE hard WITH (rate = 0.3);\nSTYLE tweet WITH (system = 'You tweet.', user = 'Tweet: {{chunk}}', gates = 'length, meaning');\nREPHRASE WITH (model = 'm', styles = 'easy,hard,tweet', temperature = 0.7);\nGATES WITH (min_cosine = 0.5);\n"
    );
    let p = Plan::parse("p.sql", &wrap, &o).unwrap();
    let names: Vec<&str> = p.styles.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["easy", "hard", "tweet"]);
    assert_eq!(p.styles[1].rate, 0.3);
    assert_eq!(p.styles[1].system, builtin("hard").unwrap().system, "a STYLE changes only what it names");
    assert_eq!(p.styles[2].gates.as_deref(), Some(&["length".to_string(), "meaning".to_string()][..]));
    assert_eq!(p.rephrase[0].0.backend().generation.temperature, 0.7);
    assert_eq!(p.gates.min_cosine, 0.5);
    let e = Plan::parse("p.sql", &wrap.replace("easy,hard", "easy,harder"), &o).unwrap_err();
    assert!(e.message.contains("unknown style `harder`") && e.message.contains("tweet"), "{e}");
    assert_eq!(e.pos.unwrap().line, 12);
    let e = Plan::parse("p.sql", &wrap.replace("length, meaning", "lenght"), &o).unwrap_err();
    assert!(e.message.contains("unknown gate `lenght`"), "{e}");
    let e = Plan::parse("p.sql", &wrap.replace("Tweet: {chunk}", "Tweet"), &o).unwrap_err();
    assert!(e.message.contains("{chunk}"), "{e}");
    let e = Plan::parse("p.sql", &wrap.replace("temperature", "temprature"), &o).unwrap_err();
    assert!(e.message.contains("unknown field `temprature`"), "{e}");
    let e = Plan::parse("p.sql", &format!("{PLAN}STYLE x WITH (system = 's', user = '{{chunk}}');"), &o).unwrap_err();
    assert!(e.message.contains("without a REPHRASE"), "{e}");
}

#[test]
fn mixtures_check_against_the_styles_and_point_at_their_statement() {
    let o = sets(&[("output", "o")]);
    let wrap = format!(
        "{PLAN}REPHRASE WITH (model = 'm', styles = 'easy,qa');\nMIX a WITH (ratio = '1:2', styles = 'qa:1, easy:3');\nMIX b WITH (stage = 'CASE WHEN n_tokens < 100 THEN ''short'' ELSE ''long'' END', stages = 'short, long');\n"
    );
    let p = Plan::parse("p.sql", &wrap, &o).unwrap();
    let m = p.mixtures().unwrap();
    assert_eq!((m[0].name.as_str(), m[1].stages.len()), ("a", 2));
    // Leaves: real 1/3, then qa and easy share 2/3 as 1:3.
    let w: Vec<(String, f64)> = m[0].leaves.iter().map(|l| (l.style.clone(), l.weight)).collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(w[0].1, 1.0 / 3.0) && w[1].0 == "easy" && close(w[1].1, 0.5) && close(w[2].1, 1.0 / 6.0), "{w:?}");
    let bad = |from: &str, to: &str| Plan::parse("p.sql", &wrap.replace(from, to), &o).unwrap().mixtures().unwrap_err();
    let e = bad("easy:3", "hard:3");
    assert!(e.message.contains("`hard` is not a style the plan rephrases"), "{e}");
    assert_eq!(e.pos.unwrap().line, 11);
    assert!(bad("1:2", "1-2").message.contains("real:synthetic"));
    assert!(bad(", stages = 'short, long'", "").message.contains("needs both"));
    assert!(bad("n_tokens < 100", "n_tokenz < 100").message.contains("n_tokenz"));
    let e = Plan::parse("p.sql", &format!("{wrap}MIX a;"), &o).unwrap_err();
    assert!(e.message.contains("MIX a appears twice"), "{e}");
    let e = Plan::parse("p.sql", &wrap.replace("ratio", "ration"), &o).unwrap_err();
    assert!(e.message.contains("unknown field `ration`"), "{e}");
}

#[test]
fn line_col_from_sqlparser_messages() {
    assert_eq!(parse_line_col("Expected: x, found: y at Line: 2, Column: 15"), Some((2, 15)));
    assert_eq!(parse_line_col("no position"), None);
}

#[test]
fn document_stages_come_from_the_registry_in_plan_order() {
    let with = |stmt: &str| PLAN.replace("CHUNK WITH", &format!("{stmt}\nCHUNK WITH"));
    let p =
        Plan::parse("p.sql", &with("STAGE clean_whitespace WITH (max_blank_lines = 0);"), &sets(&[("output", "o")]));
    let p = p.unwrap();
    assert_eq!(p.stages.len(), 1);
    assert_eq!(
        (p.stages[0].0.as_str(), &p.stages[0].1["max_blank_lines"]),
        ("clean_whitespace", &serde_json::json!(0))
    );
    let e = Plan::parse("p.sql", &with("STAGE lowercase;"), &sets(&[("output", "o")])).unwrap_err();
    assert!(e.message.contains("unknown stage `lowercase` (known: clean_whitespace)"), "{e}");
    assert_eq!(e.pos.unwrap().line, 8, "{e}");
    let e = Plan::parse("p.sql", &with("STAGE clean_whitespace WITH (blank = 1);"), &sets(&[("output", "o")]));
    let e = e.unwrap_err();
    assert!(e.message.starts_with("STAGE clean_whitespace: unknown field `blank`"), "{e}");
}
