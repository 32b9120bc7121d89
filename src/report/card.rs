//! The dataset card: `README.md` in the output, in Hugging Face's dataset-card form, so that
//! `datasets.load_dataset(OUTPUT, "synthetic")` finds each part of the output and whoever gets the
//! data learns what made it.
//!
//! The YAML header lists a configuration per part (`real`: `chunks/`; `synthetic`; `mix_NAME`
//! for each Parquet or JSON Lines mixture), each with the exact shard files of the committed
//! manifest (never a glob: a dead run's uncommitted shards are not data), the licence, pretty name
//! and languages from the plan's SINK options, and a size category. Below it: the plan and its
//! hash, each model with its weights hash, the styles and their prompts, the gates and thresholds, the
//! counts with reasons, the fidelity table, the mixtures' achieved ratios and the sources. The
//! card is written with each manifest, so a resumed run's card describes the resumed output; a
//! remix's card lists its own mixtures and the run its rows come from. Everything it says comes
//! from the manifest.

use std::fmt::Write as _;

use comfy_table::Table;
use comfy_table::presets::ASCII_MARKDOWN;

use crate::report::manifest::Manifest;
use crate::report::mixing::MixOut;

/// Where the rows of a card's output come from.
pub enum Origin<'a> {
    /// The run whose manifest it is.
    Run,
    /// `wrapflow remix` of that run: only the remix's mixtures are in the output.
    Remix { from: &'a str, mixes_file: &'a str, mixes_hash: &'a str },
}

/// Where the card is written, relative to the output.
pub const CARD: &str = "README.md";

/// A string as a YAML scalar: JSON's double-quoted form is valid YAML.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Hugging Face's size category for `n` examples.
pub fn size_category(n: u64) -> &'static str {
    const BOUNDS: [(u64, &str); 10] = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
        (10_000_000_000, "1B<n<10B"),
        (100_000_000_000, "10B<n<100B"),
        (1_000_000_000_000, "100B<n<1T"),
    ];
    BOUNDS.iter().find(|(b, _)| n < *b).map_or("n>1T", |(_, c)| c)
}

/// A configuration of the card: its name, what it holds, and its files.
pub struct Config {
    pub name: String,
    pub about: String,
    pub rows: u64,
    pub files: Vec<String>,
}

/// The configurations of a run's output: real chunks, synthetic rows, and each mixture that
/// `datasets` reads (Megatron token shards are not rows).
pub fn configs(m: &Manifest, origin: &Origin) -> Vec<Config> {
    if let Origin::Remix { .. } = origin {
        return mix_configs(&m.mixes).into_iter().filter(|c| !c.files.is_empty()).collect();
    }
    let mut out = vec![Config {
        name: "real".into(),
        about: "the source documents cut into chunks (`kind = 'real'`)".into(),
        rows: m.chunks.rows,
        files: m.chunks.shards.iter().map(|s| s.path.clone()).collect(),
    }];
    if let Some(r) = &m.rephrase {
        out.push(Config {
            name: "synthetic".into(),
            about: "accepted rephrasings, with their lineage and gate scores".into(),
            rows: r.synthetic.rows,
            files: r.synthetic.shards.iter().map(|s| s.path.clone()).collect(),
        });
    }
    out.extend(mix_configs(&m.mixes));
    out.retain(|c| !c.files.is_empty());
    out
}

/// A configuration per mixture of rows (`mix_NAME`).
pub fn mix_configs(mixes: &[MixOut]) -> Vec<Config> {
    use wrapflow_operators::stages::mix::MixFormat;
    mixes
        .iter()
        .filter(|x| x.summary.config.format != MixFormat::Megatron)
        .map(|x| Config {
            name: format!("mix_{}", x.summary.name),
            about: format!("the training mixture `{}` (ratio {})", x.summary.name, x.summary.config.ratio),
            rows: x.summary.rows,
            files: x.shards.iter().map(|s| s.path.clone()).collect(),
        })
        .collect()
}

/// The YAML header: licence, names, languages, size and the configurations (the first mixture,
/// if any, is the default: what a trainer loads).
pub fn header(m: &Manifest, configs: &[Config], examples: u64) -> String {
    let card = &m.plan.card;
    let mut y = String::from("---\n");
    let license = if card.license.is_empty() { "unknown" } else { card.license.as_str() };
    let _ = writeln!(y, "license: {}", q(license));
    let name = if card.pretty_name.is_empty() { m.plan.file.as_str() } else { card.pretty_name.as_str() };
    let _ = writeln!(y, "pretty_name: {}", q(name));
    let langs: Vec<&str> = card.language.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
    if !langs.is_empty() {
        y += "language:\n";
        langs.iter().for_each(|l| y += &format!("- {}\n", q(l)));
    }
    let _ = writeln!(y, "size_categories:\n- {}", q(size_category(examples)));
    y += "task_categories:\n- \"text-generation\"\ntags:\n- \"synthetic\"\n- \"wrapflow\"\n- \"wrap\"\n";
    y += "configs:\n";
    let default = configs.iter().position(|c| c.name.starts_with("mix_"));
    for (i, c) in configs.iter().enumerate() {
        let _ = writeln!(y, "- config_name: {}", q(&c.name));
        if Some(i) == default {
            y += "  default: true\n";
        }
        y += "  data_files:\n  - split: \"train\"\n    path:\n";
        c.files.iter().for_each(|f| y += &format!("    - {}\n", q(f)));
    }
    y + "---\n"
}

fn markdown(mut t: Table) -> String {
    t.load_preset(ASCII_MARKDOWN);
    format!("{t}\n")
}

/// The card of an output whose rows `m` describes.
pub fn card(m: &Manifest, origin: &Origin) -> String {
    let configs = configs(m, origin);
    let examples = configs.iter().map(|c| c.rows).max().unwrap_or(0);
    let mut out = header(m, &configs, examples);
    let card = &m.plan.card;
    let title =
        if card.pretty_name.is_empty() { format!("Output of {}", m.plan.file) } else { card.pretty_name.clone() };
    let _ = writeln!(out, "\n# {title}\n");
    if !card.description.is_empty() {
        let _ = writeln!(out, "{}\n", card.description);
    }
    let status =
        m.job.as_ref().map_or("finished".to_string(), |j| format!("{} at checkpoint {}", j.status, j.checkpoint));
    if let Origin::Remix { from, mixes_file, mixes_hash } = origin {
        let _ = writeln!(
            out,
            "Mixtures remixed (`wrapflow remix`, `remix.json`) from the rows of the run in `{from}` with \
             `{mixes_file}` ({mixes_hash}). That run was made by wrapflow {} from the plan `{}` ({}), status {status}; \
             what follows describes it.\n",
            m.wrapflow_version, m.plan.file, m.plan.hash
        );
    } else {
        let _ = writeln!(
            out,
            "Made by wrapflow {} from the plan `{}` ({}); this card describes the output as of its manifest \
             (`manifest.json`, status {status}).\n",
            m.wrapflow_version, m.plan.file, m.plan.hash
        );
    }
    out += &parts(&configs, m);
    out += &sources(m);
    out += &rephrasing(m);
    out += "\n## Counts\n\n";
    out += &markdown(crate::report::text::summary(m));
    if !m.rejects.by_reason.is_empty() {
        let mut t = Table::new();
        t.set_header(vec!["reject reason (`rejects/`)", "rows"]);
        m.rejects.by_reason.iter().for_each(|(k, v)| {
            t.add_row(vec![k.clone(), v.to_string()]);
        });
        out += "\n";
        out += &markdown(t);
    }
    out += &mixtures(&m.mixes);
    out += &plan_text(m);
    out
}

fn parts(configs: &[Config], m: &Manifest) -> String {
    let mut t = Table::new();
    t.set_header(vec!["configuration", "what", "rows", "files"]);
    for c in configs {
        t.add_row(vec![format!("`{}`", c.name), c.about.clone(), c.rows.to_string(), c.files.len().to_string()]);
    }
    let mut out = String::from("## Configurations\n\n");
    out += &markdown(t);
    out += "\n```python\nimport datasets\nsynthetic = datasets.load_dataset(\"path/to/this/output\", \"synthetic\", split=\"train\")\n```\n";
    let megatron: Vec<&str> = m
        .mixes
        .iter()
        .filter(|x| x.summary.config.format == wrapflow_operators::stages::mix::MixFormat::Megatron)
        .map(|x| x.summary.name.as_str())
        .collect();
    if !megatron.is_empty() {
        let _ = writeln!(
            out,
            "\nMegatron-LM token shards (`.bin` / `.idx`, read with Megatron-core's `IndexedDataset`; \
             per-document metadata in `.meta.parquet`): {}.",
            megatron.iter().map(|n| format!("`mix/{n}/`")).collect::<Vec<_>>().join(", ")
        );
    }
    out
}

fn sources(m: &Manifest) -> String {
    let mut t = Table::new();
    t.set_header(vec!["table", "location", "format", "objects", "bytes"]);
    for i in &m.inputs {
        let bytes: u64 = i.files.iter().map(|f| f.bytes).sum();
        t.add_row(vec![
            i.table.clone(),
            i.location.clone(),
            i.format.clone(),
            i.files.len().to_string(),
            bytes.to_string(),
        ]);
    }
    format!("\n## Sources\n\n{}", markdown(t))
}

fn rephrasing(m: &Manifest) -> String {
    let Some(r) = &m.rephrase else {
        return String::new();
    };
    let mut out = String::from("\n## Rephrasing\n\n");
    for m in &r.models {
        let at = m.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
        let _ =
            writeln!(out, "- model: `{}`{at}, weights `{}`, styles {}", m.model, m.weights_hash, m.styles.join(", "));
        let _ = writeln!(out, "  - generation: `{}`", m.generation);
    }
    if let Some(e) = &r.embedder {
        let _ = writeln!(out, "- embedder (meaning gate): `{e}`");
    }
    for (key, gate) in [("grounding_model", "lm gate"), ("entailment", "entailment gate")] {
        if let Some(dir) = r.gates[key].as_str().filter(|d| !d.is_empty()) {
            let _ = writeln!(out, "- {gate}: `{dir}`");
        }
    }
    let _ = writeln!(out, "- style tasks {}, accepted {}, rejected {}\n", r.tasks, r.accepted, r.rejected);
    out += "### Styles and prompts\n\n";
    for s in &r.prompts {
        let _ = writeln!(out, "**{}**{}\n", s.name, if s.qa_format { " (Question/Answer pairs)" } else { "" });
        let _ =
            writeln!(out, "```text\nsystem: {}\nuser: {}\nanswer starts: {}\n```\n", s.system, s.user, s.answer_prefix);
    }
    out += "### Gates and thresholds\n\n```json\n";
    out += &serde_json::to_string_pretty(&r.gates).expect("gate settings serialize");
    out += "\n```\n\n### Fidelity by style\n\n";
    out += &markdown(crate::report::fidelity::table(&r.styles, &r.style_order, r.real_fk_grade));
    out
}

fn mixtures(mixes: &[MixOut]) -> String {
    let mut out = String::new();
    if !mixes.is_empty() {
        out += "\n## Mixtures: targets and achieved shares (by tokens)\n";
    }
    for x in mixes {
        let s = &x.summary;
        let (real, target) = x.real_share();
        let _ = writeln!(
            out,
            "\n`{}` ({:?}, ratio {}, seed {}): {} tokens in {} shards under `mix/{}/`, real share {:.2}% (target {:.2}%)\n",
            s.name,
            s.config.format,
            s.config.ratio,
            s.config.seed,
            s.tokens,
            x.shards.len(),
            s.name,
            real * 100.0,
            target * 100.0
        );
        out += &markdown(crate::report::mixing::table(x));
    }
    out
}

fn plan_text(m: &Manifest) -> String {
    let mut out = format!("\n## The plan\n\n`{}` ({}), with these parameters:\n\n", m.plan.file, m.plan.hash);
    let mut t = Table::new();
    t.set_header(vec!["parameter", "value"]);
    m.plan.params.iter().for_each(|(k, v)| {
        t.add_row(vec![k.clone(), format!("`{v}`")]);
    });
    out += &markdown(t);
    let _ = write!(out, "\n```sql\n{}\n```\n", m.plan.text.trim_end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_categories_follow_the_hub_bounds() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(999), "n<1K");
        assert_eq!(size_category(1_000), "1K<n<10K");
        assert_eq!(size_category(123_456), "100K<n<1M");
        assert_eq!(size_category(2_000_000_000_000), "n>1T");
    }

    #[test]
    fn yaml_strings_are_quoted_so_that_any_name_stays_one_scalar() {
        assert_eq!(q("a: b # c"), "\"a: b # c\"");
        assert_eq!(q("line\n\"x\""), "\"line\\n\\\"x\\\"\"");
    }
}
