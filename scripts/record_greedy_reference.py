"""Records greedy outputs of the real default model for tests/fixtures/smollm2_greedy.json: the
prompts are tokenized by the independent BPE (reference_tokenizer.py) and decoded by a plain
ONNX Runtime loop with a KV cache, one prompt at a time, 32 new tokens each (EOS ignored).

usage: python record_greedy_reference.py MODEL.gguf MODEL_DIR > tests/fixtures/smollm2_greedy.json
needs: pip install regex onnxruntime==1.31.1 numpy
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(__file__))
from reference_tokenizer import Bpe, read_gguf_metadata  # noqa: E402

PROMPTS = [
    "Rewrite the following text in simple words.\n\nThe city council met on Tuesday to discuss the new budget for schools and roads.",
    "Write three questions and answers about this text.\n\nScientists have found a new way to measure the age of ancient trees using light.",
    "What is the capital of France?",
]


def chat(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


bpe = Bpe(read_gguf_metadata(sys.argv[1]))
model_dir = sys.argv[2]
cfg = json.load(open(f"{model_dir}/config.json"))
layers, kvh = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
sess = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
out = []
for text in PROMPTS:
    ids = bpe.encode(chat(text))
    past = {f"past_key_values.{l}.{k}": np.zeros((1, kvh, 0, head_dim), np.float32) for l in range(layers) for k in ("key", "value")}
    cur, n, pos, gen = np.array([ids], np.int64), len(ids), np.arange(len(ids), dtype=np.int64)[None], []
    for _ in range(32):
        res = dict(zip(names, sess.run(None, {"input_ids": cur, "attention_mask": np.ones((1, n), np.int64), "position_ids": pos, **past})))
        tok = int(res["logits"][0, -1].argmax())
        gen.append(tok)
        past = {f"past_key_values.{l}.{k}": res[f"present.{l}.{k}"] for l in range(layers) for k in ("key", "value")}
        cur, pos, n = np.array([[tok]], np.int64), np.array([[n]], np.int64), n + 1
    out.append({"prompt": text, "prompt_ids": ids, "greedy_ids": gen})
print(json.dumps(out, indent=1))
