"""Independent tokenizers for GGUF vocabularies: byte-level BPE (gpt2 model, smollm
pre-tokenizer), used to record the token ids in tests/fixtures/smollm2_tokenizer.json, and
SentencePiece (llama model, as Gemma uses) following llama.cpp's algorithm. They share no code
with wrapflow's importer or the Rust `tokenizers` crate: their own GGUF reader, splits and merge
loops.

usage: python reference_tokenizer.py MODEL.gguf [TEXT_JSON] > ids.json
       (TEXT_JSON: a JSON list of strings; default: the built-in STRINGS)
needs: pip install regex
"""

import json
import struct
import sys

import regex

STRINGS = [
    "Hello world",
    "The city council met on Tuesday to discuss the 2024 budget of 12,500,000 pounds.",
    "Numbers: 0 1 22 333 4444 3.14159 -7",
    "   leading spaces and  double  spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "Ünïcödé façade naïve café",
    "日本語のテキストと中文文本",
    "emoji 🌍👩‍👩‍👧‍👦🎉 done",
    "<|im_start|>user\nRewrite this.<|im_end|>\n<|im_start|>assistant\n",
    "don't won't I'll we've they're it's",
    "DON'T WON'T I'LL We'Re",
    "def f(x):\n    return x**2  # code",
    "Question: What is it?\nAnswer: It is a test.",
]


def read_gguf_metadata(path):
    f = open(path, "rb")
    magic, version, n_tensors, n_kv = struct.unpack("<IIQQ", f.read(24))
    assert magic == 0x46554747, "not a GGUF file"
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def string():
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n).decode("utf-8", "replace")

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            at, n = struct.unpack("<IQ", f.read(12))
            return [value(at) for _ in range(n)]
        return struct.unpack(fmt[t], f.read(struct.calcsize(fmt[t])))[0]

    meta = {}
    for _ in range(n_kv):
        key = string()
        (t,) = struct.unpack("<I", f.read(4))
        meta[key] = value(t)
    return meta


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
# The splits of Llama 3's and Qwen2's tokenizer.json files (case-insensitive contractions).
LLAMA3 = regex.compile(r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2 = regex.compile(r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


class Bpe:
    def __init__(self, meta):
        self.tokens = meta["tokenizer.ggml.tokens"]
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(meta["tokenizer.ggml.merges"])}
        types = meta["tokenizer.ggml.token_type"]
        specials = sorted((t for t, ty in zip(self.tokens, types) if ty in (3, 4)), key=len, reverse=True)
        self.special = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
        self.byte_map = bytes_to_unicode()
        self.pre = meta.get("tokenizer.ggml.pre", "default")
        assert self.pre in ("smollm", "gpt2", "default", "llama-bpe", "qwen2"), self.pre

    def bpe(self, word):
        if self.pre == "llama-bpe" and word in self.vocab:  # llama.cpp's ignore_merges
            return [self.vocab[word]]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            _, i = min(pairs)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        for piece in self.special.split(text):
            if not piece:
                continue
            if piece in self.vocab and self.special.fullmatch(piece):
                ids.append(self.vocab[piece])
                continue
            if self.pre in ("llama-bpe", "qwen2"):
                words = (LLAMA3 if self.pre == "llama-bpe" else QWEN2).findall(piece)
            elif self.pre == "smollm":  # every digit is its own piece, then the GPT-2 split
                words = [w for chunk in regex.split(r"(\p{N})", piece) for w in GPT2.findall(chunk)]
            else:
                words = GPT2.findall(piece)
            for word in words:
                ids.extend(self.bpe("".join(self.byte_map[b] for b in word.encode("utf-8"))))
        return ids


def special_pattern(tokens, types):
    """Control and user-defined tokens, longest first, matched before the model splits text."""
    specials = sorted((t for t, ty in zip(tokens, types) if ty in (3, 4)), key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")


class Spm:
    """llama.cpp's SentencePiece tokenizer: spaces become U+2581, then the adjacent pair whose
    concatenation is a piece with the highest score merges (leftmost on ties) until none does;
    characters outside the vocabulary become their UTF-8 bytes' <0xXX> tokens."""

    def __init__(self, meta):
        assert not meta.get("tokenizer.ggml.add_space_prefix", False), "space prefix: not needed yet"
        self.tokens, self.scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.special = special_pattern(self.tokens, meta["tokenizer.ggml.token_type"])

    def spm(self, text):
        syms = list(text.replace(" ", "\u2581"))
        while True:
            best = None
            for i in range(len(syms) - 1):
                piece = self.vocab.get(syms[i] + syms[i + 1])
                if piece is not None and (best is None or self.scores[piece] > best[0]):
                    best = (self.scores[piece], i)
            if best is None:
                break
            i = best[1]
            syms[i : i + 2] = [syms[i] + syms[i + 1]]
        ids = []
        for s in syms:
            ids.extend([self.vocab[s]] if s in self.vocab else [self.vocab["<0x%02X>" % b] for b in s.encode("utf-8")])
        return ids

    def encode(self, text):
        ids = []
        for piece in self.special.split(text):
            if piece in self.vocab and self.special.fullmatch(piece):
                ids.append(self.vocab[piece])
            elif piece:
                ids.extend(self.spm(piece))
        return ids


if __name__ == "__main__":
    meta = read_gguf_metadata(sys.argv[1])
    texts = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else STRINGS
    if meta["tokenizer.ggml.model"] == "llama":
        tok = Spm(meta)
    else:
        assert meta["tokenizer.ggml.model"] == "gpt2"
        tok = Bpe(meta)
    print(json.dumps([{"text": s, "ids": tok.encode(s)} for s in texts], ensure_ascii=False, indent=1))
