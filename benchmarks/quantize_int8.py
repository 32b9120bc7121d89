"""A probe for issue 21, item 3: how fast would int8 matrix products make prefill on this CPU?

Rewrites every MatMul with a constant 2-D weight of a standard-layout decoder (the file
`benchmarks/compare.sh` writes) as ONNX Runtime's DynamicQuantizeMatMul: int8 weights with a
scale per output column, activations quantized per call. wrapflow has no int8 path; this only
measures what ONNX Runtime's int8 kernels give, with `benchmarks/ort_reference.py`:

    python3 -m venv /tmp/qvenv && /tmp/qvenv/bin/pip install .cache/onnxruntime/onnxruntime-1.31.1-*.whl numpy onnx
    /tmp/qvenv/bin/python benchmarks/quantize_int8.py target/bench-data/compare/fp32-standard /tmp/q8
    /tmp/qvenv/bin/python benchmarks/ort_reference.py /tmp/q8 16 2 target/bench-out/compare/ids_shared_b16.json
"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in os.listdir(src):
    if f != "model.onnx":
        shutil.copy(os.path.join(src, f), out)
m = onnx.load(os.path.join(src, "model.onnx"))
g = m.graph
inits = {i.name: i for i in g.initializer}
nodes, dropped, added = [], set(), []
for node in g.node:
    w = numpy_helper.to_array(inits[node.input[1]]) if node.op_type == "MatMul" and node.input[1] in inits else None
    if w is None or w.ndim != 2:
        nodes.append(node)
        continue
    scale = (np.maximum(np.abs(w).max(axis=0), 1e-8) / 127.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    name = node.input[1]
    added += [numpy_helper.from_array(q, name + "_q8"), numpy_helper.from_array(scale, name + "_scale")]
    dropped.add(name)
    nodes.append(helper.make_node("DynamicQuantizeMatMul", [node.input[0], name + "_q8", name + "_scale"],
                                  list(node.output), name=node.name + "_q8", domain="com.microsoft"))
del g.node[:]
g.node.extend(nodes)
kept = [i for i in g.initializer if i.name not in dropped]
del g.initializer[:]
g.initializer.extend(kept + added)
if not any(o.domain == "com.microsoft" for o in m.opset_import):
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
onnx.save(m, os.path.join(out, "model.onnx"))
print(f"{len(dropped)} MatMul weights as int8 in {out}/model.onnx")
