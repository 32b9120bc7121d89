-- chunk.sql: read a corpus, drop low-quality and duplicate documents, split the rest into
-- chunks of at most ${max_tokens} tokens of the rephraser's tokenizer, and write Parquet shards.
--
--   wrapflow run plans/chunk.sql --set input=corpus/ --set output=out/chunks

PARAM input      DEFAULT 'data/bbc/bbc.jsonl';   -- a file, directory or prefix URL
PARAM output     DEFAULT 'out/chunks';           -- a directory or prefix URL
PARAM format     DEFAULT 'JSONL';                -- JSONL (.jsonl/.json, .gz, .zst), PARQUET or TEXT
PARAM tokenizer  DEFAULT 'models/smollm2-135m-instruct/tokenizer.json';
PARAM max_tokens DEFAULT 300;
PARAM text_column DEFAULT 'text';
PARAM min_words  DEFAULT 50;
PARAM shard_rows DEFAULT 100000;

TOKENIZER '${tokenizer}';

CREATE EXTERNAL TABLE raw STORED AS ${format} LOCATION '${input}'
OPTIONS ('text_column' '${text_column}');

-- Gopher quality rules (Rae et al. 2021) and C4's bad-phrase rule (Raffel et al. 2020).
CREATE VIEW docs AS
SELECT * FROM raw
WHERE word_count(text) BETWEEN ${min_words} AND 100000
  AND mean_word_length(text) BETWEEN 3 AND 10
  AND symbol_word_ratio(text) < 0.1
  AND alpha_words_ratio(text) >= 0.8
  AND stopword_count(text) >= 2
  AND bullet_lines_ratio(text) <= 0.9
  AND ellipsis_lines_ratio(text) <= 0.3
  AND dup_line_fraction(text) <= 0.3
  AND dup_ngram_fraction(text, 5) <= 0.15
  AND top_ngram_fraction(text, 2) <= 0.2
  AND bad_phrase_lines(text) = 0;

INPUT docs;
DEDUP ON text;
CHUNK WITH (max_tokens = ${max_tokens});
SINK '${output}' WITH (format = 'parquet', shard_rows = ${shard_rows});
