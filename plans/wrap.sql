-- wrap.sql: the WRAP recipe (Maini et al. 2024) end to end. Read a corpus, drop low-quality and
-- duplicate documents, cut the rest into chunks of at most ${max_tokens} tokens, rephrase every
-- chunk in the easy, medium, hard and qa styles with the default model, keep the rephrasings that
-- pass the quality gates, and write real chunks (chunks/) and synthetic rows (synthetic/) side
-- by side with full lineage; rejects/ holds every rejected record with its reason. Then mix them
-- for training (mix/): WRAP's 1:1 real:synthetic by tokens, as Parquet and as token shards, and
-- a curriculum variant, all from the same pass.
--
--   wrapflow run plans/wrap.sql --set limit=20 --set output=out/wrap
--
-- To rephrase on a server instead (vLLM, llama.cpp's llama-server, a hosted API, or
-- `wrapflow serve --model models/smollm2-135m-instruct`, which serves it as smollm2-135m-instruct):
--
--   wrapflow run plans/wrap.sql --set endpoint=http://127.0.0.1:8000/v1 [--set served=NAME]
--
-- `model` then only lends its tokenizer for chunking.

PARAM input      DEFAULT 'data/bbc/bbc.jsonl';
PARAM output     DEFAULT 'out/wrap';
PARAM limit      DEFAULT 8;                                  -- documents read (per worker)
PARAM model      DEFAULT 'models/smollm2-135m-instruct';
PARAM embedder   DEFAULT 'models/all-minilm-l6-v2';
PARAM styles     DEFAULT 'easy,medium,hard,qa';
PARAM max_tokens DEFAULT 64;                                 -- see CHUNK below
PARAM seed       DEFAULT 0;
PARAM retries    DEFAULT 2;                                  -- new answers when a model-free gate fails
PARAM qa_retries DEFAULT 4;                                  -- qa's own: the default model seldom gets a Q&A right
PARAM threads    DEFAULT 0;                                  -- ONNX Runtime threads per worker (0: the cores shared among the workers)
PARAM batch      DEFAULT 32;                                 -- sequences decoded together per worker
PARAM endpoint   DEFAULT '';                                 -- an OpenAI-compatible server to rephrase on
PARAM served     DEFAULT 'smollm2-135m-instruct';            -- the model's name there
PARAM concurrency DEFAULT 64;                                -- its requests in flight per worker
PARAM context_weight DEFAULT 0;                              -- context-aware decoding's weight (0: off; plans/README.md)
PARAM coverage   DEFAULT 0.6;                                -- least share of a claim's words in its source evidence
PARAM grounding_model DEFAULT '';                            -- a model for the lm gate (e.g. ${model}); off when empty
PARAM max_unsupported_share DEFAULT 0;                       -- the lm gate's largest share of a claim's unsupported tokens
PARAM entailment DEFAULT '';                                 -- a cross-encoder for the entailment gate (README); off when empty
PARAM min_entailment DEFAULT 0.5;                            -- its least probability that the chunk entails a claim
PARAM license    DEFAULT 'other';                            -- the input's licence, for the dataset card (BBC News: the BBC's terms)

TOKENIZER '${model}/tokenizer.json';

CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION '${input}';

-- Gopher quality rules (Rae et al. 2021) and C4's bad-phrase rule (Raffel et al. 2020).
CREATE VIEW docs AS
SELECT * FROM raw
WHERE word_count(text) BETWEEN 50 AND 100000
  AND mean_word_length(text) BETWEEN 3 AND 10
  AND symbol_word_ratio(text) < 0.1
  AND alpha_words_ratio(text) >= 0.8
  AND stopword_count(text) >= 2
  AND dup_line_fraction(text) <= 0.3
  AND dup_ngram_fraction(text, 5) <= 0.15
  AND bad_phrase_lines(text) = 0
LIMIT ${limit};

INPUT docs;
DEDUP ON text;
-- WRAP's chunks are at most ~300 tokens; the default model keeps meaning far more often on a few
-- sentences: on the blind-labelled yardstick (benchmarks/yardstick) 21% of its 64-token rewrites
-- of held-out text were faithful against 1% at 300 tokens. A stronger model may take 300.
CHUNK WITH (max_tokens = ${max_tokens});

-- The four WRAP styles are built in; a STYLE statement changes one or adds a new one, e.g.
--   STYLE hard WITH (rate = 0.3);   -- 30% of chunks get `hard`
-- On 2 cores, one worker with threads=2 and batch=32 ran 10 articles in 322 s against 578 s for
-- two workers with one thread each (same outputs; benchmarks/RESULTS.md): the defaults give one
-- worker (--workers 1) all the cores and 32 sequences.
STYLE qa WITH (retries = ${qa_retries});
REPHRASE WITH (model = '${model}', endpoint = '${endpoint}', served = '${served}', concurrency = ${concurrency},
               styles = '${styles}', seed = ${seed}, batch_size = ${batch}, threads = ${threads},
               no_repeat_ngram = 6, context_weight = ${context_weight},
               retries = ${retries}, retry_temperature = 0.7);
-- Meaning: a rewrite's MiniLM cosine to its chunk must reach 0.75 (qa sets its own 0.70: Q&As
-- reword more); with retries, an answer below it is asked for again. Coverage: each claim's
-- content words must be at least this share in its best source evidence (grounding gates).
-- With grounding_model, a language model also reads each claim with and without its chunk (the
-- lm gate; measured, not on by default: benchmarks/RESULTS.md). With entailment, a user's NLI
-- or fact-checking cross-encoder reads each claim against its chunk (the entailment gate).
GATES WITH (embedder = '${embedder}', min_cosine = 0.75, min_coverage = ${coverage},
            grounding_model = '${grounding_model}', max_unsupported_share = ${max_unsupported_share},
            entailment = '${entailment}',
            min_entailment = ${min_entailment});

SINK '${output}' WITH (format = 'parquet', license = '${license}', language = 'en',
                       pretty_name = 'WRAP rephrasings (wrapflow plans/wrap.sql)',
                       description = 'Web text cut into chunks and rephrased in the easy, medium, hard and qa styles of WRAP (Maini et al. 2024), gated for fidelity to the source, and mixed with the real text.');

-- 1:1 real:synthetic by tokens, styles equally weighted; a short synthetic side is replayed
-- (at most twice in all) rather than cutting the real text.
MIX wrap WITH (ratio = '1:1', shortfall = 'repeat', max_epochs = 2, seed = ${seed});
-- The same mixture as Megatron-LM token shards (.bin/.idx): SmolLM2's tokenizer, EOS after each document.
MIX wrap_tokens WITH (ratio = '1:1', shortfall = 'repeat', max_epochs = 2, seed = ${seed}, format = 'megatron',
                      tokenizer = '${model}/tokenizer.json', unit = 'document');
-- A curriculum: easy → medium → hard → qa, then the real text; shards sort in training order.
MIX curriculum WITH (stage = 'CASE WHEN kind = ''real'' THEN ''real'' ELSE style END',
                     stages = 'easy, medium, hard, qa, real', unit = 'document', shortfall = 'report');
