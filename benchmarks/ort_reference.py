"""The reference for the engine benchmark: a plain Python ONNX Runtime greedy loop with a KV
cache (optimum's past/present layout), on the same model file and prompts as bench_engine
(target/bench-out/engine_prompts.json), at the same batch and threads: each batch is left-padded,
prefilled in one run, then decoded a token per run. Prints one JSON line with prefill, decode and
generated tok/s (generated tokens over the whole time), and whether its greedy tokens equal the
engine's.

usage: python ort_reference.py MODEL_DIR BATCH THREADS [ENGINE_IDS_JSON]
needs: onnxruntime==1.31.1 and numpy (benchmarks/compare.sh installs them into .venv)
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

model_dir, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = json.load(open(f"{model_dir}/config.json"))
layers, kvh = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
prompts = json.load(open("target/bench-out/engine_prompts.json"))
new_tokens = 128
pad = cfg.get("pad_token_id") or 0

outs, prefill_s, decode_s, prompt_tokens = [], 0.0, 0.0, 0
t0 = time.time()
for start in range(0, len(prompts), batch):
    group = prompts[start : start + batch]
    width = max(len(p) for p in group)
    ids = np.array([[pad] * (width - len(p)) + p for p in group], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in group], np.int64)
    pos = np.maximum(mask.cumsum(1) - 1, 0)
    past = {
        f"past_key_values.{l}.{k}": np.zeros((len(group), kvh, 0, head_dim), np.float32)
        for l in range(layers)
        for k in ("key", "value")
    }
    gen = [[] for _ in group]
    prompt_tokens += sum(len(p) for p in group)
    for step in range(new_tokens):
        t = time.time()
        out = dict(zip(names, sess.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **past})))
        if step == 0:
            prefill_s += time.time() - t
        else:
            decode_s += time.time() - t
        tok = out["logits"][:, -1].argmax(-1)
        for g, x in zip(gen, tok):
            g.append(int(x))
        past = {f"past_key_values.{l}.{k}": out[f"present.{l}.{k}"] for l in range(layers) for k in ("key", "value")}
        ids = tok[:, None].astype(np.int64)
        pos = pos[:, -1:] + 1
        mask = np.concatenate([mask, np.ones((len(group), 1), np.int64)], 1)
    outs.extend(gen)
wall = time.time() - t0
generated = len(prompts) * new_tokens
result = {
    "what": "python onnxruntime loop",
    "batch": batch,
    "threads": threads,
    "prefill_tok_s": round(prompt_tokens / prefill_s, 1),
    "decode_tok_s": round((generated - len(prompts)) / decode_s, 1),
    "generated_tok_s": round(generated / wall, 1),
    "wall_s": round(wall, 1),
}
if len(sys.argv) > 4:
    engine = json.load(open(sys.argv[4]))
    result["identical_greedy_sequences"] = f"{sum(a == b for a, b in zip(outs, engine))}/{len(outs)}"
print(json.dumps(result))
