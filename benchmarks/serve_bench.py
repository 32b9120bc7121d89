"""Throughput and latency of an OpenAI-compatible server, measured with the `openai` client.

    python benchmarks/serve_bench.py BASE_URL MODEL CONCURRENCY [REQUESTS]

Sends REQUESTS chat requests (default max(16, 2 x CONCURRENCY)), at most CONCURRENCY at a time,
each a ~300-token BBC chunk (the first articles of data/bbc/bbc.jsonl, the prompts of
benchmarks/engine.rs) with "Rewrite the following text in clear, simple English.", greedy,
exactly 128 new tokens (`min_tokens` for wrapflow and vLLM, `ignore_eos` for llama.cpp: both are
sent, each server reads its own). Prints one JSON line: generated tokens/s over the wall time,
requests/s, latency p50/p99.
"""
import asyncio
import json
import sys
import time

import openai

NEW = 128


def prompts(n):
    out = []
    with open("data/bbc/bbc.jsonl") as f:
        for line in f:
            words = json.loads(line)["text"].split()
            # ~300 tokens: about 225 words of news English.
            out.append("Rewrite the following text in clear, simple English.\n\n" + " ".join(words[:225]))
            if len(out) == 16:
                break
    return [out[i % len(out)] for i in range(n)]


async def main(base, model, concurrency, n):
    client = openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)
    latencies, tokens = [], []

    async def one(text):
        async with gate:
            t0 = time.perf_counter()
            r = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], max_tokens=NEW, temperature=0,
                extra_body={"min_tokens": NEW, "ignore_eos": True},
            )
            latencies.append(time.perf_counter() - t0)
            tokens.append(r.usage.completion_tokens)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts(n)))
    wall = time.perf_counter() - t0
    latencies.sort()
    q = lambda x: latencies[min(len(latencies) - 1, int(x * len(latencies)))]
    print(json.dumps({
        "concurrency": concurrency, "requests": n, "generated_tokens": sum(tokens), "wall_s": round(wall, 2),
        "gen_tok_s": round(sum(tokens) / wall, 1), "req_s": round(n / wall, 2),
        "p50_s": round(q(0.5), 2), "p99_s": round(q(0.99), 2),
    }))


if __name__ == "__main__":
    c = int(sys.argv[3])
    asyncio.run(main(sys.argv[1], sys.argv[2], c, int(sys.argv[4]) if len(sys.argv) > 4 else max(16, 2 * c)))
