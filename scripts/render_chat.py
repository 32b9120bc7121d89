"""Renders chat templates the way Hugging Face Transformers' `apply_chat_template` does (Jinja2,
sandboxed, trim_blocks and lstrip_blocks, loop controls, `raise_exception`, `tojson` without ASCII
escaping, `tools` none), the reference that wrapflow's minijinja rendering is checked against.

usage: python render_chat.py CASES.json
  CASES.json: [{"template", "messages", "add_generation_prompt", "eos_token"}]; prints a JSON
  list of {"text": ...} or {"error": ...}, one per case (bos_token renders empty, as in wrapflow)
needs: pip install jinja2
"""

import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
out = []
for case in json.load(open(sys.argv[1])):
    try:
        text = env.from_string(case["template"]).render(
            messages=case["messages"], add_generation_prompt=case["add_generation_prompt"], bos_token="",
            eos_token=case["eos_token"], tools=None, documents=None)
        out.append({"text": text})
    except Exception as e:  # noqa: BLE001 - any failure of the template is its answer
        out.append({"error": str(e)})
print(json.dumps(out, ensure_ascii=False))
