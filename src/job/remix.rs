//! `wrapflow remix`: new mixtures from a run's committed `chunks/` and `synthetic/` shards (those
//! its last checkpoint covers), without reading, chunking or rephrasing again — for ablations of
//! ratio, format and curriculum.
//!
//! The mixtures come from a file of `MIX name WITH (...)` statements (the plan syntax). Rows are
//! read back from the run's Parquet shards in file order, one timestamp per file, and go through
//! the same [`Mix`] operator as in a run: the same ratio, curriculum and determinism guarantees
//! (a remix is byte-identical to another remix of the same run, not to the run's own mixtures,
//! whose rows arrived in other batches). The output gets `mix/NAME/...` and `remix.json`; a
//! remix into an earlier remix's output replaces it whole, under the output's lease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, UInt32Type, UInt64Type};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect};
use wrapflow_operators::io::store::{Location, StoreRegistry};
use wrapflow_operators::record::ToBatch;
use wrapflow_operators::{Chunk, Mix, MixEvent, MixRow, MixStageConfig, Mixture, StageContext};

use crate::job::{checkpoint, output};
use crate::plan::stage::{Stage, parse_stage};
use crate::plan::text::split_statements;
use crate::report::mixing::MixOut;

/// What `remix.json` records.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemixManifest {
    pub from: String,
    pub mixes_file: String,
    pub mixes_hash: String,
    pub rows_read: u64,
    pub mixes: Vec<MixOut>,
}

/// Parses a file of `MIX` statements against the styles of the source run.
pub fn mixtures(file: &str, text: &str, styles: &[String]) -> anyhow::Result<MixStageConfig> {
    let mut out: Vec<Mixture> = Vec::new();
    for (s, e) in split_statements(text) {
        let pos = crate::plan::text::pos_of(text, s);
        let (line, col) = (pos.line, pos.col);
        let at = |m: String| anyhow!("{file}:{line}:{col}: {m}");
        match parse_stage(&text[s..e]).map_err(|(_, m)| at(m))? {
            Stage::Mix { name, config } => {
                if out.iter().any(|m| m.name == name) {
                    return Err(at(format!("MIX {name} appears twice")));
                }
                out.push(Mixture::new(&name, config, styles).map_err(|e| at(format!("MIX {name}: {e:#}")))?);
            }
            _ => return Err(at("a remix file holds only MIX statements".into())),
        }
    }
    if out.is_empty() {
        bail!("{file} declares no MIX");
    }
    Ok(MixStageConfig { mixtures: out.into_iter().map(|m| (m.name, m.config)).collect(), styles: styles.to_vec() })
}

/// One column of a batch by name.
fn col<'a>(b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a dyn Array> {
    b.column_by_name(name).map(|c| c.as_ref()).ok_or_else(|| anyhow!("shard lacks column {name}"))
}

/// The rows of a batch with the columns of `chunks/` or `synthetic/` shards, of any integer and
/// string types (a table built in Python, not only a shard read back).
pub fn batch_rows(b: &RecordBatch) -> anyhow::Result<Vec<MixRow>> {
    let mut fields = Chunk::schema().fields().to_vec();
    fields.push(Arc::new(Field::new("cosine", DataType::Float64, true)));
    let mut columns = Vec::with_capacity(fields.len());
    let mut kept = Vec::with_capacity(fields.len());
    for f in fields {
        let Some(c) = b.column_by_name(f.name()) else {
            anyhow::ensure!(
                f.name() == "cosine",
                "no column {:?}: a mix needs the columns of a run's shards",
                f.name()
            );
            continue;
        };
        anyhow::ensure!(f.name() == "cosine" || c.null_count() == 0, "column {:?} has nulls", f.name());
        columns.push(arrow::compute::cast(c, f.data_type()).with_context(|| format!("column {:?}", f.name()))?);
        kept.push(Field::new(f.name(), f.data_type().clone(), true));
    }
    rows(&RecordBatch::try_new(Arc::new(Schema::new(kept)), columns)?)
}

/// The rows of a `chunks/` or `synthetic/` shard.
fn rows(b: &RecordBatch) -> anyhow::Result<Vec<MixRow>> {
    let s = |n: &str| col(b, n).map(|c| c.as_string::<i32>());
    let (text, kind, style, doc, file) = (s("text")?, s("kind")?, s("style")?, s("doc_id")?, s("source_file")?);
    let u32s = |n: &str| col(b, n).map(|c| c.as_primitive::<UInt32Type>());
    let u64s = |n: &str| col(b, n).map(|c| c.as_primitive::<UInt64Type>());
    let (chunk, ntok) = (u32s("chunk_index")?, u32s("n_tokens")?);
    let (start, end, line) = (u64s("byte_start")?, u64s("byte_end")?, u64s("source_line")?);
    let cosine = b.column_by_name("cosine").map(|c| c.as_primitive::<Float64Type>());
    Ok((0..b.num_rows())
        .map(|i| MixRow {
            text: text.value(i).into(),
            kind: kind.value(i).into(),
            style: style.value(i).into(),
            doc_id: doc.value(i).into(),
            chunk_index: chunk.value(i),
            n_tokens: ntok.value(i),
            byte_start: start.value(i),
            byte_end: end.value(i),
            source_file: file.value(i).into(),
            source_line: line.value(i),
            cosine: cosine.filter(|c| !c.is_null(i)).map(|c| c.value(i)),
        })
        .collect())
}

/// Reads every committed Parquet shard under `dir` of a run, one list of rows per file, in name
/// order: a shard its last checkpoint does not cover would be removed by a resume.
async fn read_dir(loc: &Location, dir: &str, committed: &BTreeSet<String>) -> anyhow::Result<Vec<Vec<MixRow>>> {
    let prefix = loc.child(dir);
    let mut metas: Vec<_> = loc.store.list(Some(&prefix)).try_collect().await?;
    metas.retain(|m| m.location.as_ref().ends_with(".parquet") && committed.contains(&loc.relative(&m.location)));
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::new();
    for m in metas {
        let bytes: Bytes = loc.store.get(&m.location).await?.bytes().await?;
        let mut file = Vec::new();
        for b in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
            file.extend(rows(&b?).with_context(|| format!("reading {}", m.location))?);
        }
        out.push(file);
    }
    Ok(out)
}

/// Set when another process takes the remix output's lease: the remix then fails before it
/// writes `remix.json`.
static LEASE_LOST: AtomicBool = AtomicBool::new(false);

/// What a remix output may hold: an earlier remix's files, which a remix replaces.
fn remix_file(p: &str) -> bool {
    p == "remix.json"
        || p == "report.html"
        || p == crate::report::card::CARD
        || (p.starts_with("mix/") && crate::job::output::is_ours(p))
}

/// The shards a run's last checkpoint covers (relative paths).
async fn committed(src: &Location) -> anyhow::Result<BTreeSet<String>> {
    let commit = checkpoint::latest(src)
        .await?
        .ok_or_else(|| anyhow!("{} holds no committed checkpoint: nothing to remix", src.url))?;
    let reports: Vec<_> = checkpoint::indexes(src, &commit).await?.into_iter().map(|i| i.report).collect();
    Ok(checkpoint::committed_files(&reports))
}

/// Runs the remix: reads `from`, writes the mixtures of `mixes_file` to `to`. As a run does, it
/// holds the output's lease while it writes, and replaces an earlier remix there whole (never
/// anything else), so that `remix.json` always describes every shard beside it.
pub fn run(from: &str, mixes_file: &str, to: &str) -> anyhow::Result<RemixManifest> {
    let manifest = crate::report::text::load(from)?;
    let styles = manifest.rephrase.as_ref().map(|r| r.style_order.clone()).unwrap_or_default();
    let text = std::fs::read_to_string(mixes_file).with_context(|| format!("reading {mixes_file}"))?;
    let mixes = mixtures(mixes_file, &text, &styles)?;
    let registry = StoreRegistry::new();
    let src = registry.resolve(from, &Default::default())?;
    anyhow::ensure!(
        src.url.trim_end_matches('/') != registry.resolve(to, &Default::default())?.url.trim_end_matches('/'),
        "--out {to} is the run itself: write a remix to its own location"
    );
    holding(to, |rt, dst| {
        // Real chunks first, then rephrasings, each file its own timestamp (as a run's batches are).
        let committed = rt.block_on(committed(&src))?;
        let mut files = rt.block_on(read_dir(&src, "chunks", &committed))?;
        files.extend(rt.block_on(read_dir(&src, "synthetic", &committed))?);
        let out = mix_into(rt, dst, &mixes, files, (from, mixes_file, &text))?;
        // The card: the remix's mixtures, and what made the rows (the run's manifest).
        let described = crate::report::manifest::Manifest { mixes: out.mixes.clone(), ..manifest };
        let origin = crate::report::card::Origin::Remix { from, mixes_file, mixes_hash: &out.mixes_hash };
        let card = crate::report::card::card(&described, &origin).into_bytes();
        rt.block_on(checkpoint::put(dst, crate::report::card::CARD, card))?;
        Ok(out)
    })
}

/// Mixes rows that are given rather than read from a run (`wrapflow.mix` from Python): each of
/// `files` is one timestamp, as each shard file of a run is one in a remix, so the same rows in
/// the same files give a remix's shards byte for byte. `from` says where the rows came from in
/// `remix.json`; no dataset card is written (there is no run manifest to describe them).
/// `mixes` are [`mixtures`] of `text` (named `mixes_name`).
pub fn mix_rows(
    files: Vec<Vec<MixRow>>,
    mixes: &MixStageConfig,
    (mixes_name, text): (&str, &str),
    to: &str,
    from: &str,
) -> anyhow::Result<RemixManifest> {
    holding(to, |rt, dst| mix_into(rt, dst, mixes, files, (from, mixes_name, text)))
}

/// Runs `f` on the output `to` while holding its lease.
fn holding<T>(to: &str, f: impl FnOnce(&tokio::runtime::Runtime, &Location) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let dst = StoreRegistry::new().resolve(to, &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let lease = rt.block_on(output::Lease::acquire(&dst, rt.handle(), &LEASE_LOST))?;
    let result = f(&rt, &dst);
    rt.block_on(lease.release());
    result
}

/// Writes the mixtures of `files` (one timestamp each) and `remix.json` to `dst`, replacing an
/// earlier remix there (never anything else).
fn mix_into(
    rt: &tokio::runtime::Runtime,
    dst: &Location,
    mixes: &MixStageConfig,
    files: Vec<Vec<MixRow>>,
    (from, mixes_file, text): (&str, &str, &str),
) -> anyhow::Result<RemixManifest> {
    rt.block_on(output::ensure_only(dst, |p| remix_file(p) || p == output::LEASE))?;
    // The earlier remix goes first: its shards would otherwise stay beside the new ones.
    let earlier = rt.block_on(output::list_all(dst))?;
    for p in earlier.iter().filter(|p| remix_file(p)) {
        rt.block_on(dst.store.delete(&dst.child(p))).with_context(|| format!("removing {}/{p}", dst.url))?;
    }
    let rows_read = files.iter().map(|f| f.len() as u64).sum();
    let events = mix_files(rt, dst, mixes, files)?;
    let mixes = crate::report::mixing::merge(events)?;
    for m in &mixes {
        anyhow::ensure!(
            m.summary.rows_in == rows_read,
            "mixture {}: {} rows in, {rows_read} read",
            m.summary.name,
            m.summary.rows_in
        );
    }
    let out = RemixManifest {
        from: from.into(),
        mixes_file: mixes_file.into(),
        mixes_hash: format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()),
        rows_read,
        mixes,
    };
    let json = serde_json::to_vec_pretty(&out)?;
    // A remix.json for shards another job may have replaced meanwhile would describe other files.
    anyhow::ensure!(
        !LEASE_LOST.load(std::sync::atomic::Ordering::SeqCst),
        "{} was taken by another job while this remix wrote it: run the remix again",
        dst.url
    );
    rt.block_on(dst.store.put(&dst.child("remix.json"), PutPayload::from(json)))
        .with_context(|| format!("writing {}/remix.json", dst.url))?;
    Ok(out)
}

/// The [`Mix`] operator over `files`, one timestamp each, writing into `dst`: what it reported.
fn mix_files(
    rt: &tokio::runtime::Runtime,
    dst: &Location,
    mixes: &MixStageConfig,
    files: Vec<Vec<MixRow>>,
) -> anyhow::Result<Vec<MixEvent>> {
    let events: Arc<Mutex<Vec<MixEvent>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (ev, errs, files, handle, out, mixes) =
        (events.clone(), errors.clone(), Arc::new(files), rt.handle().clone(), dst.clone(), mixes.clone());
    timely::execute(timely::Config::thread(), move |worker| {
        let mut input = InputHandle::new();
        let ev = ev.clone();
        let ctx = StageContext { errors: errs.clone(), ..Default::default() }.with_output(out.clone(), handle.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .container::<Vec<MixRow>>()
                .mix(&mixes, &ctx)
                .inspect(move |e: &MixEvent| ev.lock().expect("events lock").push(e.clone()));
        });
        for (t, rows) in files.iter().enumerate() {
            input.send_batch(&mut rows.clone());
            input.advance_to(t as u64 + 1);
            worker.step();
        }
    })
    .map_err(|e| anyhow!("cannot start the remix: {e}"))?
    .join()
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| anyhow!("remix failed: {e}"))?;
    if let Some(e) = errors.lock().unwrap_or_else(|e| e.into_inner()).first() {
        bail!("{e}");
    }
    Ok(std::mem::take(&mut *events.lock().expect("events lock")))
}

/// Counts of a remix for the terminal.
pub fn text(m: &RemixManifest) -> String {
    let by: BTreeMap<&str, u64> = m.mixes.iter().map(|x| (x.summary.name.as_str(), x.summary.tokens)).collect();
    format!("remix of {} ({} rows): {by:?}\n{}", m.from, m.rows_read, crate::report::mixing::text(&m.mixes))
}
