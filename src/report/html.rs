//! `report.html`: a self-contained page (inline SVG, no scripts, nothing fetched) with the plots a
//! data team looks at first: each mixture's real share per shard against its target, tokens per
//! curriculum stage in training order, length histograms by style, rejects by reason.

use std::fmt::Write;

use crate::report::fidelity;
use crate::report::manifest::{Manifest, RephraseOut};
use crate::report::mixing::MixOut;
use crate::report::samples::Sample;

/// Bin width of the length histograms in the manifest, in tokens.
pub const LENGTH_BIN: u64 = 16;

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;
const COLORS: [&str; 8] = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart with an optional horizontal target line (values and target on one scale).
fn bars(title: &str, labels: &[String], values: &[f64], target: Option<&[f64]>, fmt: &dyn Fn(f64) -> String) -> String {
    let max = values.iter().chain(target.unwrap_or(&[]).iter()).copied().fold(0.0f64, f64::max).max(1e-12) * 1.1;
    let n = values.len().max(1) as f64;
    let bw = (W - 2.0 * PAD) / n;
    let y = |v: f64| H - PAD - v / max * (H - 2.0 * PAD);
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">",
        esc(title)
    );
    let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/>", H - PAD, W - PAD);
    let _ = write!(s, "<text x=\"2\" y=\"{}\" font-size=\"10\">{}</text>", PAD - 4.0, esc(&fmt(max / 1.1)));
    for (i, v) in values.iter().enumerate() {
        let x = PAD + i as f64 * bw;
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
            x + bw * 0.1,
            y(*v),
            (bw * 0.8).max(0.5),
            (H - PAD - y(*v)).max(0.0),
            COLORS[0],
            esc(label),
            esc(&fmt(*v))
        );
        // At most ~16 labels on the x axis.
        if i % values.len().div_ceil(16).max(1) == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                x + bw / 2.0,
                H - PAD + 12.0,
                esc(label)
            );
        }
    }
    if let Some(t) = target {
        for (i, v) in t.iter().enumerate() {
            let x = PAD + i as f64 * bw;
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" y1=\"{2:.1}\" x2=\"{:.1}\" y2=\"{2:.1}\" stroke=\"{3}\" stroke-width=\"2\"><title>target {4}</title></line>",
                x,
                x + bw,
                y(*v),
                COLORS[2],
                esc(&fmt(*v))
            );
        }
    }
    s + "</svg></figure>\n"
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr>";
    for r in rows {
        s += "<tr>";
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s += "</tr>";
    }
    s + "</table>\n"
}

/// The page for a run's manifest.
fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn num(v: f64) -> String {
    format!("{v:.0}")
}

/// The page of a run: its counts, mixtures, lengths, rephrasings and `samples`.
pub fn page(m: &Manifest, samples: &[Sample]) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>wrapflow report</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}figure{margin:1em 0}\
         figcaption{font-weight:600}table{border-collapse:collapse;margin:.5em 0}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
         table.sample td{text-align:left;vertical-align:top;white-space:pre-wrap;width:50%}\
         mark.copy{background:#ffe08a}mark.name{background:#ffb3b3}mark.unsupported{background:#c9d7ff}</style></head><body>\n",
    );
    let _ =
        writeln!(s, "<h1>wrapflow report</h1><p>plan <code>{}</code> ({})</p>", esc(&m.plan.file), esc(&m.plan.hash));
    let c = &m.counts;
    s += &table(
        &["read", "rejected", "filtered", "limited", "duplicates", "near duplicates", "kept", "chunks"],
        &[[c.read, c.rejected, c.filtered, c.limited, c.duplicates, c.near_duplicates, c.kept, c.chunks]
            .iter()
            .map(u64::to_string)
            .collect()],
    );
    for mix in &m.mixes {
        s += &mixture(mix);
    }
    if !m.lengths.is_empty() {
        s += "<h2>Lengths by style (tokens per row)</h2>\n";
        for (style, hist) in &m.lengths {
            let labels: Vec<String> = (0..hist.len()).map(|i| (i as u64 * LENGTH_BIN).to_string()).collect();
            let v: Vec<f64> = hist.iter().map(|&x| x as f64).collect();
            s += &bars(&format!("{style}: rows per {LENGTH_BIN}-token bin"), &labels, &v, None, &num);
        }
    }
    if let Some(r) = &m.rephrase {
        s += &rephrasings(r);
    }
    if !m.rejects.by_reason.is_empty() {
        let (l, v): (Vec<String>, Vec<f64>) = m.rejects.by_reason.iter().map(|(k, v)| (k.clone(), *v as f64)).unzip();
        s += &bars("All rejects by reason", &l, &v, None, &num);
    }
    s += &sample_section(samples);
    s + "</body></html>\n"
}

/// Per style, the samples: source and rephrasing side by side, the rephrasing marked.
fn sample_section(samples: &[Sample]) -> String {
    if samples.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Samples</h2><p>Per style, accepted and rejected rows chosen by a hash of document, chunk and \
         style. Marked in the rephrasing: <mark class=\"copy\">word 5-grams copied verbatim from the \
         source</mark>, <mark class=\"name\">names the source lacks</mark>, <mark class=\"unsupported\">the sentences \
         a gate rejected</mark> (no supporting source sentence, too little of it in its best evidence, names \
         joined that no source sentence joins, flipped polarity), the gate named in the reason.</p>\n",
    );
    let mut styles: Vec<&str> = samples.iter().map(|x| x.style.as_str()).collect();
    styles.sort();
    styles.dedup();
    for style in styles {
        let _ = write!(
            s,
            "<h3 id=\"samples-{0}\">{0}</h3><table class=\"sample\"><tr><th>source</th><th>rephrasing</th></tr>",
            esc(style)
        );
        for x in samples.iter().filter(|x| x.style == style) {
            let verdict = if x.accepted { "accepted".to_string() } else { format!("rejected: {}", esc(&x.reason)) };
            let _ = write!(
                s,
                "<tr class=\"{}\"><td>{}</td><td><b>{verdict}</b> ({} #{})\n{}</td></tr>",
                if x.accepted { "accepted" } else { "rejected" },
                esc(&x.source),
                esc(&x.doc_id),
                x.chunk_index,
                marked(&x.source, &x.text, &x.unsupported)
            );
        }
        s += "</table>\n";
    }
    s
}

/// `text`, escaped, with its words that belong to a word 5-gram of `source`, its names that
/// `source` lacks and the words of its `unsupported` sentences marked.
fn marked(source: &str, text: &str, unsupported: &[String]) -> String {
    let norm = |t: &str| t.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let src: Vec<String> = source.split_whitespace().map(norm).filter(|w| !w.is_empty()).collect();
    let grams: std::collections::HashSet<&[String]> = src.windows(5).collect();
    let tokens: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    let words: Vec<String> = tokens.iter().map(|t| norm(t)).collect();
    let mut copied = vec![false; tokens.len()];
    for i in 0..words.len().saturating_sub(4) {
        if words[i..i + 5].iter().all(|w| !w.is_empty()) && grams.contains(&words[i..i + 5]) {
            copied[i..i + 5].iter_mut().for_each(|c| *c = true);
        }
    }
    // A text in Question/Answer pairs may use the labels as words, as its gate allows.
    use wrapflow_operators::stages::gates::{format_words, new_entities, qa_pairs};
    let names: std::collections::HashSet<String> =
        new_entities(source, text, format_words(qa_pairs(text) > 0)).into_iter().collect();
    // Byte ranges of the unsupported sentences that the text holds.
    // A claim made of several sentences (a question read with its answer) is marked by its parts.
    let find = |u: &str| text.find(u).map(|at| at..at + u.len());
    let spans: Vec<std::ops::Range<usize>> = unsupported
        .iter()
        .filter(|u| !u.is_empty())
        .flat_map(|u| match find(u) {
            Some(r) => vec![r],
            None => wrapflow_operators::fidelity::sentences::claims(u).into_iter().filter_map(find).collect(),
        })
        .collect();
    let mut out = String::new();
    let mut at = 0;
    for (t, copy) in tokens.iter().zip(copied) {
        let word = t.trim().trim_matches(|c: char| !c.is_alphanumeric());
        let inside = spans.iter().any(|r| r.contains(&at));
        at += t.len();
        let class = if !word.is_empty() && t.split(|c: char| !c.is_alphanumeric()).any(|w| names.contains(w)) {
            Some("name")
        } else if inside {
            Some("unsupported")
        } else if copy {
            Some("copy")
        } else {
            None
        };
        match class {
            Some(c) => {
                let (body, space) = t.split_at(t.trim_end().len());
                let _ = write!(out, "<mark class=\"{c}\">{}</mark>{space}", esc(body));
            }
            None => out += &esc(t),
        }
    }
    out
}

/// A mixture: its real share per shard, tokens per stage, and its leaves.
fn mixture(mix: &MixOut) -> String {
    let mut s = String::new();
    let sum = &mix.summary;
    let (real, target) = mix.real_share();
    let _ = writeln!(
        s,
        "<h2>Mixture {}</h2><p>{} tokens, {} shards, real share {} (target {}), shortfall {:?}, seed {}</p>",
        esc(&sum.name),
        sum.tokens,
        mix.shards.len(),
        pct(real),
        pct(target),
        sum.config.shortfall,
        sum.config.seed
    );
    let labels: Vec<String> = (0..mix.shards.len()).map(|i| i.to_string()).collect();
    let shares: Vec<f64> = mix.shards.iter().map(|x| x.real_share).collect();
    let targets: Vec<f64> = mix.shards.iter().map(|x| x.target_real_share).collect();
    s += &bars("Real share per shard, in training order (red: target)", &labels, &shares, Some(&targets), &pct);
    s += &bars(
        "Tokens per curriculum stage, in training order",
        &sum.stages,
        &sum.tokens_by_stage.iter().map(|&t| t as f64).collect::<Vec<_>>(),
        None,
        &num,
    );
    let rows: Vec<Vec<String>> = sum
        .leaves
        .iter()
        .zip(&sum.outcome)
        .enumerate()
        .map(|(i, (l, o))| {
            vec![
                l.kind.clone(),
                l.style.clone(),
                l.source.clone(),
                pct(l.weight),
                pct(sum.achieved.get(i).copied().unwrap_or(0.0)),
                o.tokens.to_string(),
                o.epochs.to_string(),
                o.left_out_tokens.to_string(),
                sum.shortfall_tokens.get(i).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    s += &table(&["kind", "style", "source", "target", "achieved", "tokens", "epochs", "left out", "short by"], &rows);
    s
}

/// The rephrasings: rejects by reason, acceptance by style, and the per-style fidelity table.
fn rephrasings(r: &RephraseOut) -> String {
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    for st in r.styles.values() {
        for (k, v) in &st.by_reason {
            *reasons.entry(k.clone()).or_insert(0) += v;
        }
    }
    let (l, v): (Vec<String>, Vec<f64>) = reasons.into_iter().map(|(k, v)| (k, v as f64)).unzip();
    let mut s = String::from("<h2>Rephrasings</h2>\n");
    s += &bars("Gate rejects by reason", &l, &v, None, &num);
    let order = &r.style_order;
    let acc: Vec<f64> = order.iter().map(|k| r.styles.get(k).map_or(0.0, |x| x.acceptance)).collect();
    s += &bars("Acceptance by style", order, &acc, None, &pct);
    let rows: Vec<Vec<String>> =
        fidelity::ordered(&r.styles, order).into_iter().map(|k| fidelity::row(k, &r.styles[k])).collect();
    s += "<figure><figcaption>Fidelity by style</figcaption>\n";
    s += &table(&fidelity::HEADER, &rows);
    s + "</figure>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_mark_copies_new_names_and_the_unsupported_sentence() {
        let src = "The council approved the new budget for the city schools on Monday.";
        let out = "The council approved the new budget for the city schools. It was praised by Watson. It rained.";
        let html = marked(src, out, &["It rained.".to_string()]);
        assert!(html.starts_with("<mark class=\"copy\">The</mark> "), "{html}");
        assert!(html.contains("<mark class=\"name\">Watson.</mark>"), "{html}");
        assert!(html.contains("<mark class=\"unsupported\">It</mark> <mark class=\"unsupported\">rained.</mark>"));
        assert!(!html.contains("<mark class=\"unsupported\">praised"), "{html}");
        assert!(!marked(src, out, &[]).contains("unsupported"), "nothing unsupported, nothing marked");
        // A question read with its answer (the entailment gate's claim) is marked in both lines.
        let qa = "Question: When?\nAnswer: On Sunday.\nQuestion: Who?\nAnswer: The council.";
        let html = marked(src, qa, &["When? On Sunday.".to_string()]);
        assert!(html.contains("<mark class=\"unsupported\">When?</mark>"), "{html}");
        assert!(html.contains("<mark class=\"unsupported\">On</mark>"), "{html}");
        assert!(!html.contains("<mark class=\"unsupported\">Who?"), "{html}");
    }
}
