"""Independent reference for wrapflow's embedder and cross-encoder: BERT forward pass in numpy,
straight from a Hugging Face directory's model.safetensors; then mean pooling and L2 norm (a
sentence-transformers embedder) or the pooler and classifier (BertForSequenceClassification).

    python3 scripts/reference_embed.py MODEL_DIR < batch.json > out.json

batch.json: {"input_ids": [[...], ...], "attention_mask": [[...], ...]} and, for text pairs,
"token_type_ids"; prints a list of vectors (embeddings, or a classifier's logits).
"""
import json
import math
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name.removeprefix("bert.")] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def erf(x):
    return np.vectorize(math.erf)(x)


def main():
    model_dir = sys.argv[1]
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = load(f"{model_dir}/model.safetensors")
    batch = json.load(sys.stdin)
    ids = np.array(batch["input_ids"], dtype=np.int64)
    mask = np.array(batch["attention_mask"], dtype=np.float64)
    eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    B, T = ids.shape
    lin = lambda x, p: x @ w[f"{p}.weight"].T.astype(np.float64) + w[f"{p}.bias"]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T]
    types = np.array(batch.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64)
    x = x + w["embeddings.token_type_embeddings.weight"][types]
    x = layer_norm(x.astype(np.float64), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    H = x.shape[-1]
    d = H // nh
    bias = (1.0 - mask)[:, None, None, :] * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        heads = lambda t: t.reshape(B, T, nh, d).transpose(0, 2, 1, 3)
        q, k, v = (heads(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, H)
        x = layer_norm(lin(ctx, f"{p}.attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"],
                       w[f"{p}.attention.output.LayerNorm.bias"], eps)
        u = lin(x, f"{p}.intermediate.dense")
        u = 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))
        x = layer_norm(lin(u, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                       w[f"{p}.output.LayerNorm.bias"], eps)
    if "classifier.weight" in w:
        pooled = np.tanh(lin(x[:, 0], "pooler.dense"))
        json.dump(lin(pooled, "classifier").tolist(), sys.stdout)
        return
    pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    json.dump(pooled.tolist(), sys.stdout)


if __name__ == "__main__":
    main()
