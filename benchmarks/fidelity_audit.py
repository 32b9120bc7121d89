#!/usr/bin/env python3
"""Measures the accepted WRAP rows of finished outputs from their files, not from wrapflow's gates.

usage: python3 benchmarks/fidelity_audit.py OUT_DIR [OUT_DIR ...]
needs: pip install onnxruntime tokenizers pyarrow numpy   (a benchmark venv, not CI)

The same code measures any output, so a run of a binary without the fidelity gates ("before")
and one with them ("after") are compared on one footing. Per style, over accepted rows:
  names   rows with a name the source lacks (a capitalised word that does not start its
          sentence, or an acronym; compared lower case, without possessive/plural endings)
  unsup   rows with a sentence (questions and Q/A labels aside) whose best MiniLM cosine to a
          source sentence is below 0.5 (models/all-minilm-l6-v2, the plan's gate embedder)
  numbers rows with a number the source lacks, in digits or in words ("six" is 6)
  copy    median share of word 5-grams copied verbatim from the source
  novel   mean share of content words (4+ letters, not a function word) whose stem the source
          lacks; this is the measure no gate of wrapflow computes: new vocabulary is where
          added facts hide when they carry no capital letter and no digit
  cos     mean whole-text MiniLM cosine to the source
The first three repeat what the "after" gates reject by construction; "novel" and a reading of
the rows (benchmarks/RESULTS.md) are the independent evidence.
"""
import glob, json, os, re, statistics, sys

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
from tokenizers import Tokenizer

MODEL = "models/all-minilm-l6-v2"
FUNCTION = set("""about above after again against also although among another because been before
being below between both could does doing down during each either enough even ever every from
further have having here herself himself however into itself just least less many more most much
must near neither never none once only other ought ours ourselves over same several shall should
since some such than that their theirs them themselves then there these they this those though
through thus till under until upon very were what whatever when where whether which while whom
whose will with within without would your yours yourself question answer""".split())
ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc"}


def stem(w):
    w = w.lower().replace("’", "'")
    for suffix in ("'s", "'"):
        if w.endswith(suffix):
            w = w[: -len(suffix)]
    if len(w) > 4 and w.endswith("es"):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def sentences(text):
    out = []
    for line in text.splitlines():
        start = 0
        for m in re.finditer(r"[.!?…](?=\s|$)", line):
            before = line[start : m.start()].split()[-1:] or [""]
            if len(before[0]) == 1 and before[0].isupper() or before[0].lower() in ABBREV:
                continue
            out.append(line[start : m.end()].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if any(c.isalnum() for c in s)]


LABEL = re.compile(r"^\W*(q|a|question|answer)\s*\d*\W*:\W*", re.I)


def words(text):
    return [w for w in re.split(r"[^\w'’]+", text) if w.strip("'’")]


def new_names(src, out):
    known = {stem(w) for w in words(src)}
    found = []
    for s in sentences(out):
        for i, w in enumerate(words(LABEL.sub("", s))):
            w = w.strip("'’")
            acronym = sum(c.isupper() for c in w) >= 2 and all(c.isupper() or c.isdigit() or c in "'’" for c in w)
            if (acronym or (w[0].isupper() and i > 0)) and w.split("'")[0] not in ("I", "Q", "A", "OK"):
                if stem(w) not in known:
                    found.append(w)
    return found


WORDS = {w: i + 2 for i, w in enumerate("""two three four five six seven eight nine ten eleven
    twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen""".split())}
WORDS.update({w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())})


def numbers(text):
    """Figures written in digits."""
    return {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def word_figures(text):
    """Number words (two..ninety, "twenty-five") as their values."""
    found = set()
    for tens, unit in re.findall(r"\b([a-z]+)(?:-([a-z]+))?\b", text.lower()):
        if tens in WORDS:
            found.add(str(WORDS[tens] + (WORDS.get(unit, 0) if WORDS[tens] >= 20 and WORDS.get(unit, 10) < 10 else 0)))
    return found


def invented(text, src):
    """Figures of text the source lacks in any form; a word's figure may be the source's scaled
    ("five" of "5m" or "500"), a figure in digits may not."""
    have = numbers(src) | word_figures(src)
    words = {n for n in word_figures(text) - have if not any(str(int(n) * m) in have for m in (100, 1000))}
    return (numbers(text) - have) | words


def grams(text, n=5):
    ws = [w.lower() for w in re.split(r"[^\w']+", text) if w]
    return [" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)]


def copy_share(src, out):
    g = grams(out)
    have = set(grams(src))
    return sum(x in have for x in g) / len(g) if g else 0.0


def novel_share(src, out):
    known = {stem(w) for w in words(src)}
    content = [w for w in words(out) if w.isalpha() and len(w) >= 4 and w.lower() not in FUNCTION]
    return sum(stem(w) not in known for w in content) / len(content) if content else 0.0


class Embedder:
    def __init__(self):
        self.tok = Tokenizer.from_file(f"{MODEL}/tokenizer.json")
        self.tok.enable_truncation(256)
        self.tok.enable_padding()
        self.session = ort.InferenceSession(f"{MODEL}/model.onnx")
        self.cache = {}

    def __call__(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for i in range(0, len(todo), 32):
            enc = self.tok.encode_batch(todo[i : i + 32])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            v = self.session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]
            for t, x in zip(todo[i : i + 32], v):
                self.cache[t] = x / np.linalg.norm(x)
        return [self.cache[t] for t in texts]


def rows(out, sub):
    for f in sorted(glob.glob(f"{out}/{sub}/**/*.parquet", recursive=True)):
        yield from pq.read_table(f).to_pylist()


def audit(out, emb):
    m = json.load(open(f"{out}/manifest.json"))
    chunks = {(r["doc_id"], r["chunk_index"]): r["text"] for r in rows(out, "chunks")}
    per = {}
    for r in rows(out, "synthetic"):
        src, text = chunks[(r["doc_id"], r["chunk_index"])], r["text"]
        claims = [LABEL.sub("", s) for s in sentences(text)]
        claims = [c for c in claims if not c.endswith("?") and any(ch.isalnum() for ch in c)]
        ss = sentences(src)
        sv, cv = emb(ss), emb(claims)
        best = [max(float(c @ s) for s in sv) for c in cv] if ss else []
        whole = emb([src, text])
        per.setdefault(r["style"], []).append(
            dict(
                names=bool(new_names(src, text)),
                unsup=any(b < 0.5 for b in best),
                numbers=bool(invented(text, src)),
                copy=copy_share(src, text),
                novel=novel_share(src, text),
                cos=float(whole[0] @ whole[1]),
            )
        )
    styles = m["rephrase"]["styles"]
    print(f"{out}: {m['counts']['chunks']} chunks, {m['rephrase']['tasks']} style tasks")
    print("| style | tasks | accepted | rate | names | unsup | numbers | copy p50 | novel mean | novel p90 | cos | FK |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in m["rephrase"].get("style_order", sorted(styles)):
        s, rs = styles.get(name), per.get(name, [])
        if not s:
            continue
        n = max(len(rs), 1)
        pct = lambda k: f"{sum(x[k] for x in rs)} ({100 * sum(x[k] for x in rs) / n:.0f}%)"
        novel = sorted(x["novel"] for x in rs) or [0.0]
        fk = s.get("mean_fk_grade")
        print(
            f"| {name} | {s['tasks']} | {s['accepted']} | {100 * s['accepted'] / max(s['tasks'], 1):.0f}% | "
            f"{pct('names')} | {pct('unsup')} | {pct('numbers')} | "
            f"{statistics.median([x['copy'] for x in rs] or [0]):.2f} | {statistics.mean(novel):.2f} | "
            f"{novel[int(0.9 * (len(novel) - 1))]:.2f} | {statistics.mean([x['cos'] for x in rs] or [0]):.3f} | "
            f"{'-' if fk is None else f'{fk:.1f}'} |"
        )


if __name__ == "__main__":
    emb = Embedder()
    for out in sys.argv[1:]:
        audit(out, emb)
