//! What the mix stage writes: the Arrow form of mixed rows, and the files of a shard.
//!
//! Parquet and JSON Lines shards hold one row per chunk: the row's own columns (as in `chunks/`
//! and `synthetic/`) plus `source`, `stage`, `epoch` (0 on the first pass over its leaf, more
//! for rows written again by `shortfall = repeat`) and `tokens` (what the ratio counted).
//! Token shards are Megatron's `NAME.bin` + `NAME.idx` ([`crate::io::tokens`]) with one document per mixing
//! unit, and `NAME.meta.parquet` with one row per document in the same order: `doc_id`,
//! `chunk_index` (first chunk), `chunks`, `kind`, `style`, `source`, `stage`, `epoch`, `tokens`
//! (EOS included, so `tokens[i]` is sequence `i`'s length in the `.idx`). The `.idx` is written last: a
//! shard whose `.idx` exists is complete.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::sink::{SinkFormat, encode_batches};
use crate::io::tokens::TokenShardWriter;
use crate::record::utf8;
use crate::stages::mix::config::{MixFormat, Mixture};
use crate::stages::mix::row::{MixItem, MixShard, row_columns, row_fields};
use crate::stages::mix::scheduler::ClosedShard;

fn u32s(it: impl Iterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(it))
}

fn u64s(it: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(it))
}

/// A stage name as it may appear in a file name.
pub fn file_part(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).take(32).collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Token counts of a shard by kind, style and source, and its real share against the target.
pub fn shard_info(mix: &Mixture, shard: &ClosedShard<MixItem>, base: &str) -> MixShard {
    let ext = mix.config.format.extension();
    let mut info = MixShard {
        mixture: mix.name.clone(),
        path: format!("{base}.{ext}"),
        stage: mix.stages[shard.stage].clone(),
        ..Default::default()
    };
    let mut leaves_in = vec![false; mix.leaves.len()];
    for p in &shard.units {
        let u = &p.unit;
        leaves_in[u.leaf] = true;
        let leaf = &mix.leaves[u.leaf];
        info.rows += u.rows.len() as u64;
        info.tokens += u.tokens;
        *info.kinds.entry(leaf.kind.clone()).or_insert(0) += u.tokens;
        *info.kind_rows.entry(leaf.kind.clone()).or_insert(0) += u.rows.len() as u64;
        let n = u.rows.len() as u64;
        if leaf.kind == "synthetic" {
            *info.styles.entry(leaf.style.clone()).or_insert(0) += u.tokens;
            *info.style_rows.entry(leaf.style.clone()).or_insert(0) += n;
        }
        *info.sources.entry(u.rows[0].source.clone()).or_insert(0) += u.tokens;
        *info.source_rows.entry(u.rows[0].source.clone()).or_insert(0) += n;
    }
    let real = info.kinds.get("real").copied().unwrap_or(0);
    info.real_share = real as f64 / info.tokens.max(1) as f64;
    let w = |real: bool| -> f64 {
        mix.leaves
            .iter()
            .zip(&leaves_in)
            .filter(|(l, on)| **on && (l.kind == "real") == real)
            .map(|(l, _)| l.weight)
            .sum()
    };
    info.target_real_share = w(true) / (w(true) + w(false)).max(f64::MIN_POSITIVE);
    info
}

/// The files of a shard, in the order to write them.
pub fn encode(mix: &Mixture, shard: &ClosedShard<MixItem>, base: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let stage = mix.stages[shard.stage].as_str();
    match mix.config.format {
        MixFormat::Parquet | MixFormat::Jsonl => {
            let items: Vec<(&MixItem, u32, u64)> = shard
                .units
                .iter()
                .flat_map(|p| {
                    let eos = mix.tokenizer.is_some() as u64;
                    let n = p.unit.rows.len();
                    p.unit.rows.iter().enumerate().map(move |(i, it)| {
                        let t = if mix.tokenizer.is_some() {
                            it.ids.len() as u64 + eos * (i + 1 == n) as u64
                        } else {
                            it.row.n_tokens as u64
                        };
                        (it, p.epoch, t)
                    })
                })
                .collect();
            let mut fields = row_fields();
            fields.extend([
                Field::new("source", DataType::Utf8, false),
                Field::new("stage", DataType::Utf8, false),
                Field::new("epoch", DataType::UInt32, false),
                Field::new("tokens", DataType::UInt64, false),
            ]);
            let schema = Arc::new(Schema::new(fields));
            let mut cols = row_columns(items.iter().map(|x| x.0.row.as_ref()));
            cols.extend([
                utf8(items.iter().map(|x| x.0.source.as_str())),
                utf8(items.iter().map(|_| stage)),
                u32s(items.iter().map(|x| x.1)),
                u64s(items.iter().map(|x| x.2)),
            ]);
            let batch = RecordBatch::try_new(schema.clone(), cols)?;
            let format = if mix.config.format == MixFormat::Parquet { SinkFormat::Parquet } else { SinkFormat::Jsonl };
            let name = format!("{base}.{}", mix.config.format.extension());
            Ok(vec![(name, encode_batches(schema, std::iter::once(Ok(batch)), format)?)])
        }
        MixFormat::Megatron => {
            let tok = mix.tokenizer.as_ref().expect("format megatron has a tokenizer (checked by Mixture::new)");
            let mut w = TokenShardWriter::new(tok.vocab, tok.eos);
            let mut ids = Vec::new();
            for p in &shard.units {
                ids.clear();
                for it in &p.unit.rows {
                    ids.extend_from_slice(&it.ids);
                }
                w.push(&ids)?;
            }
            let first = |f: fn(&MixItem) -> &str| utf8(shard.units.iter().map(move |p| f(&p.unit.rows[0])));
            let leaf = |p: &crate::stages::mix::scheduler::Placed<MixItem>| &mix.leaves[p.unit.leaf];
            let schema = Arc::new(Schema::new(vec![
                Field::new("doc_id", DataType::Utf8, false),
                Field::new("chunk_index", DataType::UInt32, false),
                Field::new("chunks", DataType::UInt32, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("style", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("stage", DataType::Utf8, false),
                Field::new("epoch", DataType::UInt32, false),
                Field::new("tokens", DataType::UInt64, false),
            ]));
            let meta = RecordBatch::try_new(
                schema.clone(),
                vec![
                    first(|it| it.row.doc_id.as_str()),
                    u32s(shard.units.iter().map(|p| p.unit.rows[0].row.chunk_index)),
                    u32s(shard.units.iter().map(|p| p.unit.rows.len() as u32)),
                    utf8(shard.units.iter().map(|p| leaf(p).kind.as_str())),
                    utf8(shard.units.iter().map(|p| leaf(p).style.as_str())),
                    first(|it| it.source.as_str()),
                    utf8(shard.units.iter().map(|_| stage)),
                    u32s(shard.units.iter().map(|p| p.epoch)),
                    u64s(shard.units.iter().map(|p| p.unit.tokens)),
                ],
            )?;
            let meta = encode_batches(schema, std::iter::once(Ok(meta)), SinkFormat::Parquet)?;
            let (bin, idx) = w.finish();
            Ok(vec![(format!("{base}.bin"), bin), (format!("{base}.meta.parquet"), meta), (format!("{base}.idx"), idx)])
        }
    }
}
