"""Test data for wrapflow's GGUF reader, written with llama.cpp's own Python package (PyPI
`gguf`), so that wrapflow is checked against an implementation it shares no code with.

usage:
  python gguf_testdata.py types OUT.gguf
      one tensor `t.NAME` per GGML type wrapflow reads, and `ref.NAME`: its values as
      gguf-py dequantizes them (F32)
needs: pip install gguf==0.19.0 numpy
"""

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


if __name__ == "__main__":
    {"types": types}[sys.argv[1]](*sys.argv[2:])
