"""The reference for the engine benchmark: a plain Python ONNX Runtime greedy loop with a KV
cache, one prompt at a time, on the same model file and prompts (written by bench_engine).
Prints generated tok/s and whether its greedy tokens equal the engine's.

usage: python ort_reference.py MODEL_DIR [ENGINE_IDS_JSON]
needs: pip install onnxruntime==1.31.1 numpy
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

model_dir = sys.argv[1]
cfg = json.load(open(f"{model_dir}/config.json"))
layers, kvh = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
sess = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
prompts = json.load(open("target/bench-out/engine_prompts.json"))
new_tokens = 128

outs, t0 = [], time.time()
for ids in prompts:
    past = {f"past_key_values.{l}.{k}": np.zeros((1, kvh, 0, head_dim), np.float32) for l in range(layers) for k in ("key", "value")}
    cur = np.array([ids], np.int64)
    n, gen = len(ids), []
    pos = np.arange(n, dtype=np.int64)[None]
    for step in range(new_tokens):
        feed = {"input_ids": cur, "attention_mask": np.ones((1, n), np.int64), "position_ids": pos, **past}
        res = sess.run(None, feed)
        names = [o.name for o in sess.get_outputs()]
        out = dict(zip(names, res))
        tok = int(out["logits"][0, -1].argmax())
        gen.append(tok)
        past = {f"past_key_values.{l}.{k}": out[f"present.{l}.{k}"] for l in range(layers) for k in ("key", "value")}
        cur = np.array([[tok]], np.int64)
        pos = np.array([[n]], np.int64)
        n += 1
    outs.append(gen)
wall = time.time() - t0
print(json.dumps({"what": "python onnxruntime loop", "generated_tok_s": round(len(prompts) * new_tokens / wall, 1), "wall_s": round(wall, 1)}))
if len(sys.argv) > 2:
    engine = json.load(open(sys.argv[2]))
    same = sum(a == b for a, b in zip(outs, engine))
    print(json.dumps({"identical_greedy_sequences": f"{same}/{len(outs)}"}))
