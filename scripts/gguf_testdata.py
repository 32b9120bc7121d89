"""Test data for wrapflow's GGUF reader, written with llama.cpp's own Python package (PyPI
`gguf`), so that wrapflow is checked against an implementation it shares no code with.

usage:
  python gguf_testdata.py types OUT.gguf
      one tensor `t.NAME` per GGML type wrapflow reads, and `ref.NAME`: its values as
      gguf-py dequantizes them (F32)
  python gguf_testdata.py model ARCH OUT.gguf
      a tiny random decoder of family ARCH (llama, qwen2, qwen3, phi3, gemma3) in llama.cpp's tensor
      layout,
      its weights spread over the tensor types above, with a byte-level vocabulary
  python gguf_testdata.py forward MODEL.gguf STEPS ID...
      the last position's logits for the ids, and STEPS greedy tokens, from a float64 numpy
      forward pass written from the published architectures (JSON on stdout)
  python gguf_testdata.py hf MODEL.gguf OUT_DIR
      the same model as a Hugging Face folder (config.json, two safetensors shards and their
      index; F16/BF16 tensors stay 16-bit, the rest f32), in Transformers' names and layout
  python gguf_testdata.py retoken MODEL.gguf PRE OUT.gguf
      MODEL.gguf's byte-level vocabulary and merges under another pre-tokenizer name (no tensors)
  python gguf_testdata.py greedy MODEL.gguf STEPS PROMPTS.json
      STEPS greedy tokens after each list of ids in PROMPTS.json (a JSON list of id lists), by
      the same forward pass, the model read once (JSON on stdout)
needs: pip install gguf==0.19.0 numpy
"""

import json
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


def random_k_blocks(rng, qtype, rows, cols):
    """Random bytes for K-quant blocks gguf-py cannot quantize, with finite f16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.05, size=(rows, cols // block, 2)).astype(np.float16).view(np.uint8)
    if qtype == T.Q6_K:
        raw[..., size - 2 :] = scales[..., :2]  # d is the last field
    else:
        raw[..., :4] = scales  # d and dmin lead
    return raw.reshape(rows, -1)


def quantized(rng, name, rows=4, cols=512):
    qtype = T[name]
    values = rng.normal(0, 0.5, size=(rows, cols)).astype(np.float32)
    try:
        raw = gguf.quants.quantize(values, qtype)
    except NotImplementedError:
        raw = random_k_blocks(rng, qtype, rows, cols)
    return qtype, raw


def types(out):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(out, "wrapflow-types")
    for name in TYPES:
        qtype, raw = quantized(rng, name)
        ref = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        w.add_tensor(f"t.{name}", raw, raw_dtype=qtype)
        w.add_tensor(f"ref.{name}", ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_vocab():
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Weight types per tensor, so that one tiny model exercises every type the reader takes.
LAYER_TYPES = [
    {"attn_q": "Q4_K", "attn_k": "Q5_K", "attn_v": "Q6_K", "attn_output": "Q8_0",
     "ffn_gate": "Q4_0", "ffn_up": "Q5_1", "ffn_down": "Q4_1"},
    {"attn_q": "Q4_0", "attn_k": "F16", "attn_v": "BF16", "attn_output": "Q4_K",
     "ffn_gate": "Q5_0", "ffn_up": "Q4_K", "ffn_down": "Q6_K"},
]


LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def llama3_factors(base, d, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """rope_freqs as llama.cpp's convert_hf_to_gguf.py computes it for Llama 3.1."""
    low_wavelen = original_max_position_embeddings / low_freq_factor
    high_wavelen = original_max_position_embeddings / high_freq_factor
    out = []
    for freq in base ** (-np.arange(0, d, 2, dtype=np.float64) / d):
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def model(arch, out):
    """`arch` may end in `+TYPE`: layer 0's attn_q is then stored as TYPE (for error tests)."""
    arch, _, odd_type = arch.partition("+")
    layer_types = [dict(t) for t in LAYER_TYPES]
    if odd_type:
        layer_types[0]["attn_q"] = odd_type
    rng = np.random.default_rng({"llama": 1, "qwen2": 2, "qwen3": 3, "phi3": 4, "gemma3": 5}[arch])
    hidden, heads, kv_heads, ffn, layers = 256, 4, 2, 512, 2
    head_dim = 128 if arch in ("qwen3", "gemma3") else hidden // heads
    vocab = byte_vocab() + ["Ġt", "he", "<|im_start|>", "<|im_end|>"]
    w = gguf.GGUFWriter(out, arch)
    w.add_context_length(512)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0 if arch == "llama" else 1000000.0)
    if arch in ("qwen3", "gemma3"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "gemma3":
        # A window shorter than the test's prompts, and layer 1 global, so both kinds are checked;
        # the global layer's rotary scaled as Gemma 3 4B's is.
        w.add_sliding_window(8)
        w.add_sliding_window_pattern(2)
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(8.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(vocab)
    w.add_token_types([1] * 258 + [3, 3])
    w.add_token_merges(["Ġ t", "h e"])
    w.add_bos_token_id(258)
    w.add_eos_token_id(259)
    w.add_chat_template(CHATML)

    def tensor(name, shape, qtype, scale):
        values = rng.normal(0, scale, size=shape).astype(np.float32)
        if qtype == "F32":
            w.add_tensor(name, values)
            return
        try:
            raw = gguf.quants.quantize(values, T[qtype])
        except NotImplementedError:
            raw = random_k_blocks(rng, T[qtype], shape[0], shape[1])
        w.add_tensor(name, raw, raw_dtype=T[qtype])

    if arch == "llama":  # Llama 3.1's rotary scaling, with a context short enough to matter here
        w.add_tensor("rope_freqs.weight", llama3_factors(10000.0, head_dim, **LLAMA3_SCALING))
    tensor("token_embd.weight", (len(vocab), hidden), "F16", 0.5)
    if arch != "gemma3":  # Gemma ties its output head to the embeddings
        tensor("output.weight", (len(vocab), hidden), "Q8_0", 0.1)
    w.add_tensor("output_norm.weight", (1 + rng.normal(0, 0.1, hidden)).astype(np.float32))
    shapes = {"attn_q": (heads * head_dim, hidden), "attn_k": (kv_heads * head_dim, hidden),
              "attn_v": (kv_heads * head_dim, hidden), "attn_output": (hidden, heads * head_dim),
              "ffn_gate": (ffn, hidden), "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}
    if arch == "phi3":  # Q, K and V in one tensor; gate and up in one (gate first)
        shapes["attn_qkv"] = ((heads + 2 * kv_heads) * head_dim, hidden)
        shapes["ffn_up"] = (2 * ffn, hidden)
        for types in layer_types:
            types["attn_qkv"] = types.pop("attn_q")
            del types["attn_k"], types["attn_v"], types["ffn_gate"]
    for i, types in enumerate(layer_types):
        for name, qtype in types.items():
            tensor(f"blk.{i}.{name}.weight", shapes[name], qtype, 0.08)
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", (1 + rng.normal(0, 0.1, hidden)).astype(np.float32))
        if arch == "qwen2":
            for name in ("attn_q", "attn_k", "attn_v"):
                w.add_tensor(f"blk.{i}.{name}.bias", rng.normal(0, 0.3, shapes[name][0]).astype(np.float32))
        if arch == "gemma3":
            for norm in ("post_attention_norm", "post_ffw_norm"):
                w.add_tensor(f"blk.{i}.{norm}.weight", (1 + rng.normal(0, 0.1, hidden)).astype(np.float32))
        if arch in ("qwen3", "gemma3"):
            for name in ("attn_q_norm", "attn_k_norm"):
                w.add_tensor(f"blk.{i}.{name}.weight", (1 + rng.normal(0, 0.1, head_dim)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class Reference:
    """A decoder forward pass in float64, reading the GGUF as llama.cpp lays it out."""

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        field = lambda k: r.fields[k].contents() if k in r.fields else None  # noqa: E731
        self.arch = field("general.architecture")
        a = self.arch
        self.heads, self.kv_heads = field(f"{a}.attention.head_count"), field(f"{a}.attention.head_count_kv")
        hidden = field(f"{a}.embedding_length")
        self.head_dim = field(f"{a}.attention.key_length") or hidden // self.heads
        self.layers, self.eps = field(f"{a}.block_count"), field(f"{a}.attention.layer_norm_rms_epsilon")
        self.theta = field(f"{a}.rope.freq_base")
        self.window = field(f"{a}.attention.sliding_window")
        self.pattern = field(f"{a}.attention.sliding_window_pattern") or 6  # an int, or per layer
        # Linear rotary scaling (global layers only, in Gemma 3), as llama.cpp reads it.
        linear = field(f"{a}.rope.scaling.type") == "linear"
        self.linear = (field(f"{a}.rope.scaling.factor") or 1.0) if linear else 1.0
        self.t = {}
        for t in r.tensors:
            values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            self.t[t.name] = values.reshape([int(d) for d in reversed(t.shape)])
        # llama.cpp divides each rotary frequency by rope_freqs (Llama 3.1's scaling).
        self.freq_factors = self.t.get("rope_freqs.weight", 1.0)

    def norm(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def local(self, i):
        """Gemma 3: the last layer of every `pattern` is global, the others see `window` keys."""
        if self.window is None:
            return False
        if isinstance(self.pattern, list):
            return bool(self.pattern[i])
        return (i + 1) % self.pattern != 0

    def rope(self, x, theta, divisor=1.0):
        """x: [T, heads, d]. llama.cpp's llama rotates adjacent pairs (its Q/K rows are stored
        for that); the others rotate element i with i + d/2 ("NEOX"). Frequencies are divided
        by `divisor` (a number, or one per frequency)."""
        n, d = x.shape[0], self.head_dim
        inv = theta ** (-np.arange(0, d, 2) / d) / divisor
        ang = np.arange(n)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.arch == "llama":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    def attention(self, i, x):
        t, n = self.t, x.shape[0]
        p = f"blk.{i}."
        proj = {}
        weights = {}
        if p + "attn_qkv.weight" in t:  # Phi-3: rows are Q, then K, then V
            q_rows, kv_rows = self.heads * self.head_dim, self.kv_heads * self.head_dim
            qkv = t[p + "attn_qkv.weight"]
            weights = {"attn_q": qkv[:q_rows], "attn_k": qkv[q_rows : q_rows + kv_rows], "attn_v": qkv[q_rows + kv_rows :]}
        for name, h in (("attn_q", self.heads), ("attn_k", self.kv_heads), ("attn_v", self.kv_heads)):
            y = x @ (weights[name] if weights else t[p + name + ".weight"]).T
            if p + name + ".bias" in t:
                y = y + t[p + name + ".bias"]
            proj[name] = y.reshape(n, h, self.head_dim)
        q, k, v = proj["attn_q"], proj["attn_k"], proj["attn_v"]
        if p + "attn_q_norm.weight" in t:
            q, k = self.norm(q, t[p + "attn_q_norm.weight"]), self.norm(k, t[p + "attn_k_norm.weight"])
        # Gemma 3's local layers: base 10000, unscaled.
        theta, div = (10000.0, 1.0) if self.local(i) else (self.theta, self.linear * self.freq_factors)
        q, k = self.rope(q, theta, div), self.rope(k, theta, div)
        group = self.heads // self.kv_heads
        back = np.arange(n)[:, None] - np.arange(n)[None, :]
        allowed = (back >= 0) & ((back < self.window) if self.local(i) else True)
        causal = np.where(allowed, 0.0, -np.inf)
        out = []
        for h in range(self.heads):
            s = q[:, h] @ k[:, h // group].T / np.sqrt(self.head_dim) + causal
            s = np.exp(s - s.max(-1, keepdims=True))
            out.append((s / s.sum(-1, keepdims=True)) @ v[:, h // group])
        return np.concatenate(out, -1) @ t[p + "attn_output.weight"].T

    def post(self, name, y):
        """Gemma 3 norms each block's output before its residual."""
        return self.norm(y, self.t[name]) if name in self.t else y

    def logits(self, ids):
        t, gemma = self.t, self.arch == "gemma3"
        x = t["token_embd.weight"][ids]
        if gemma:
            x = x * np.sqrt(x.shape[-1])
        for i in range(self.layers):
            p = f"blk.{i}."
            x = x + self.post(p + "post_attention_norm.weight", self.attention(i, self.norm(x, t[p + "attn_norm.weight"])))
            h = self.norm(x, t[p + "ffn_norm.weight"])
            if p + "ffn_gate.weight" in t:
                g, u = h @ t[p + "ffn_gate.weight"].T, h @ t[p + "ffn_up.weight"].T
            else:  # Phi-3: ffn_up holds the gate's rows, then the up projection's
                g, u = np.split(h @ t[p + "ffn_up.weight"].T, 2, axis=-1)
            if gemma:  # GELU, tanh approximation
                act = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3)))
            else:  # SiLU
                act = g / (1 + np.exp(-g))
            x = x + self.post(p + "post_ffw_norm.weight", (act * u) @ t[p + "ffn_down.weight"].T)
        head = t.get("output.weight", t["token_embd.weight"])
        return self.norm(x[-1], t["output_norm.weight"]) @ head.T


def forward(path, steps, *ids):
    ref = Reference(path)
    ids = [int(i) for i in ids]
    first = ref.logits(ids)
    greedy, seq = [], list(ids)
    for _ in range(int(steps)):
        nxt = int(np.argmax(ref.logits(seq)))
        greedy.append(nxt)
        seq.append(nxt)
    json.dump({"logits": first.tolist(), "greedy": greedy}, sys.stdout)


def big(out, shape="mistral-7b"):
    """A random model of a real 7B shape (Mistral 7B: the WRAP paper's rephraser), for memory
    and speed benchmarks: Q4_K linear layers and embeddings, a Q6_K output head, f32 norms, as a
    Q4_K_S file has them. The blocks are random bytes with finite scales: nothing to learn from,
    but every byte is read as a real one is."""
    hidden, layers, heads, kv_heads, ffn, vocab = {"mistral-7b": (4096, 32, 32, 8, 14336, 32000)}[shape]
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(out, "llama")
    w.add_context_length(32768)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(1000000.0)
    tokens = byte_vocab() + ["<s>", "</s>"] + [f"t{i}" for i in range(vocab - 258)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")  # a pre-tokenizer name llama.cpp knows too
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3, 3] + [1] * (vocab - 258))
    w.add_token_merges(["t 0"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    w.add_chat_template(CHATML)

    def q(name, rows, cols, qtype="Q4_K"):
        w.add_tensor(name, random_k_blocks(rng, T[qtype], rows, cols), raw_dtype=T[qtype])

    q("token_embd.weight", vocab, hidden)
    q("output.weight", vocab, hidden, "Q6_K")
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    kv = kv_heads * hidden // heads
    for i in range(layers):
        for name, (rows, cols) in {"attn_q": (hidden, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
                                   "attn_output": (hidden, hidden), "ffn_gate": (ffn, hidden),
                                   "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}.items():
            q(f"blk.{i}.{name}.weight", rows, cols)
        for name in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{name}.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_safetensors(path, tensors):
    """tensors: name -> (float32 array, "F32" | "F16" | "BF16")."""
    header, blobs, offset = {}, [], 0
    for name, (arr, dtype) in tensors.items():
        if dtype == "F16":
            raw = arr.astype("<f2").tobytes()
        elif dtype == "BF16":  # the values come from BF16 tensors, so the top half is exact
            raw = (arr.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            raw = arr.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + b"".join(blobs))


HF_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3", "gemma3": "gemma3_text"}


def hf_name(arch, name):
    """A GGUF tensor name in Transformers' naming."""
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, i, rest = name.split(".", 2)
    ffn_norm = "pre_feedforward_layernorm" if arch == "gemma3" else "post_attention_layernorm"
    up = "gate_up_proj" if arch == "phi3" else "up_proj"
    parts = {"attn_norm": "input_layernorm", "ffn_norm": ffn_norm, "post_attention_norm": "post_attention_layernorm",
             "post_ffw_norm": "post_feedforward_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj",
             "ffn_up": f"mlp.{up}", "ffn_down": "mlp.down_proj"}
    base, kind = rest.rsplit(".", 1)
    return f"model.layers.{i}.{parts[base]}.{kind}"


def hf(path, out, dtype=None):
    """`dtype` BF16 or F16 stores every tensor so, as downloaded checkpoints are."""
    import os

    r = gguf.GGUFReader(path)
    field = lambda k: r.fields[k].contents() if k in r.fields else None  # noqa: E731
    arch = field("general.architecture")
    heads, kv_heads = field(f"{arch}.attention.head_count"), field(f"{arch}.attention.head_count_kv")
    tensors = {}
    for t in r.tensors:
        if t.name == "rope_freqs.weight":  # Transformers derives it from config.json's rope_scaling
            continue
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        values = values.reshape([int(d) for d in reversed(t.shape)])
        if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_k.weight")):
            # Undo llama.cpp's permutation of Q/K rows (its convert script's `permute`).
            n = heads if "attn_q" in t.name else kv_heads
            values = values.reshape(n, values.shape[0] // n // 2, 2, -1).swapaxes(1, 2).reshape(values.shape)
        if arch == "gemma3" and t.name.endswith("norm.weight"):
            values = values - 1  # Transformers' Gemma norms multiply by 1 + w
        kept = t.tensor_type.name if t.tensor_type.name in ("F16", "BF16") else "F32"
        tensors[hf_name(arch, t.name)] = (values, dtype or kept)
    os.makedirs(out, exist_ok=True)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, members in shards.items():
        write_safetensors(os.path.join(out, file), {n: tensors[n] for n in members})
    index = {"weight_map": {n: f for f, members in shards.items() for n in members}}
    json.dump(index, open(os.path.join(out, "model.safetensors.index.json"), "w"))
    head_dim = field(f"{arch}.attention.key_length")
    config = {
        "model_type": HF_MODEL_TYPE[arch], "vocab_size": len(field("tokenizer.ggml.tokens")),
        "hidden_size": field(f"{arch}.embedding_length"), "intermediate_size": field(f"{arch}.feed_forward_length"),
        "num_hidden_layers": field(f"{arch}.block_count"), "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "rope_theta": field(f"{arch}.rope.freq_base"),
        "rms_norm_eps": field(f"{arch}.attention.layer_norm_rms_epsilon"),
        "max_position_embeddings": field(f"{arch}.context_length"), "tie_word_embeddings": "lm_head.weight" not in tensors,
        "bos_token_id": field("tokenizer.ggml.bos_token_id"), "eos_token_id": field("tokenizer.ggml.eos_token_id"),
        "rope_scaling": None,
    }
    if any(t.name == "rope_freqs.weight" for t in r.tensors):
        config["rope_scaling"] = {"rope_type": "llama3", **LLAMA3_SCALING}
    if field(f"{arch}.rope.scaling.type") == "linear":
        config["rope_scaling"] = {"rope_type": "linear", "factor": field(f"{arch}.rope.scaling.factor")}
    if head_dim:
        config["head_dim"] = head_dim
    if arch == "gemma3":
        pattern = field(f"{arch}.attention.sliding_window_pattern") or 6  # llama.cpp's default for gemma3
        config["sliding_window"] = field(f"{arch}.attention.sliding_window")
        config["layer_types"] = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                                 for i in range(config["num_hidden_layers"])]
        config["rope_local_base_freq"] = 10000.0
        config["query_pre_attn_scalar"] = head_dim
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)


def retoken(path, pre, out):
    """Adds multi-digit pieces (SmolLM2 has none), so that splits of digit runs change the ids."""
    r = gguf.GGUFReader(path)
    field = lambda k: r.fields[k].contents()  # noqa: E731
    digits = [("2", "0"), ("2", "4"), ("20", "24"), ("20", "2"), ("1", "2"), ("0", "0"), ("00", "0"), ("3", "3"), ("33", "3")]
    w = gguf.GGUFWriter(out, "llama")
    w.add_tokenizer_model(field("tokenizer.ggml.model"))
    w.add_tokenizer_pre(pre)
    w.add_token_list(field("tokenizer.ggml.tokens") + [a + b for a, b in digits])
    w.add_token_types(field("tokenizer.ggml.token_type") + [1] * len(digits))
    w.add_token_merges(field("tokenizer.ggml.merges") + [f"{a} {b}" for a, b in digits])
    w.add_bos_token_id(field("tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(field("tokenizer.ggml.eos_token_id"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def greedy(path, steps, prompts):
    ref = Reference(path)
    out = []
    for ids in json.load(open(prompts)):
        seq = list(ids)
        for _ in range(int(steps)):
            seq.append(int(np.argmax(ref.logits(seq))))
        out.append(seq[len(ids) :])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"types": types, "model": model, "big": big, "forward": forward, "greedy": greedy, "hf": hf, "retoken": retoken}[sys.argv[1]](*sys.argv[2:])
