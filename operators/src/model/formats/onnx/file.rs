//! Writing an ONNX model without holding it serialized in memory: large initializers go to a
//! spill file while the graph is built; the model is then streamed out, copying each one's bytes
//! into place (the same bytes prost would write for the whole model at once), or, past
//! protobuf's 2 GiB limit or on request, keeping the spill file as the model's external data.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::model::formats::onnx::proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};

/// The file ONNX Runtime reads external data from, beside `model.onnx`.
pub const DATA_FILE: &str = "model.onnx.data";
/// Models bigger than this keep their weights in [`DATA_FILE`]: protobuf cannot parse a message
/// of 2 GiB or more, and the rest of the model needs some room.
const MAX_EMBEDDED: u64 = (1 << 31) - (64 << 20);
/// External data offsets are page-aligned, so ONNX Runtime can map the tensors rather than copy.
const ALIGN: u64 = 4096;

/// Where a spilled initializer's bytes are.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    offset: u64,
    len: u64,
}

/// An initializer: its bytes in `tensor.raw_data`, or in the spill file at `spilled`.
pub struct Init {
    pub tensor: TensorProto,
    pub spilled: Option<Span>,
}

/// The spill file of a graph being built. A write error is kept and reported when the model is
/// written, so that building the graph stays infallible. The file is removed when dropped unless
/// it has become the model's external data.
pub struct Spill {
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
    error: Option<std::io::Error>,
}

impl Spill {
    pub fn create(dir: &Path) -> anyhow::Result<Spill> {
        let path = dir.join(format!("{DATA_FILE}.partial"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Spill { path, file: BufWriter::with_capacity(1 << 20, file), len: 0, error: None })
    }

    /// Appends `bytes` at the next aligned offset.
    pub fn put(&mut self, bytes: &[u8]) -> Span {
        self.put_parts(bytes.len() as u64, std::iter::once(bytes))
    }

    /// Appends f32 values (little-endian) a chunk at a time, without a copy of the whole tensor.
    pub fn put_f32(&mut self, values: &[f32]) -> Span {
        self.put_parts(4 * values.len() as u64, values.chunks(1 << 14).map(f32_bytes))
    }

    /// Appends f16 values (little-endian) a chunk at a time.
    pub fn put_f16(&mut self, values: &[half::f16]) -> Span {
        self.put_parts(2 * values.len() as u64, values.chunks(1 << 14).map(f16_bytes))
    }

    fn put_parts<B: AsRef<[u8]>>(&mut self, len: u64, parts: impl Iterator<Item = B>) -> Span {
        let pad = (ALIGN - self.len % ALIGN) % ALIGN;
        let offset = self.len + pad;
        if self.error.is_none() {
            let mut written = self.file.write_all(&[0; ALIGN as usize][..pad as usize]);
            for part in parts {
                written = written.and_then(|_| self.file.write_all(part.as_ref()));
            }
            self.error = written.err();
        }
        self.len = offset + len;
        Span { offset, len }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What [`write`] wrote.
pub struct Written {
    /// `blake3:` of model.onnx, followed by its external data when there is some (as
    /// [`model_hash`] computes it).
    pub hash: String,
    /// Bytes written, external data included.
    pub bytes: u64,
    /// Whether the weights are in [`DATA_FILE`].
    pub external: bool,
}

/// Little-endian bytes of f32 values, as ONNX stores them.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of f16 values.
pub fn f16_bytes(v: &[half::f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A length-delimited field's key and length prefix.
fn field_header(tag: u32, len: u64, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len, out);
}

/// The size of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: u64) -> u64 {
    key_len(tag) as u64 + encoded_len_varint(len) as u64 + len
}

/// The size of an initializer's message, its spilled bytes included.
fn init_len(init: &Init) -> u64 {
    let rest = init.tensor.encoded_len() as u64;
    match init.spilled {
        Some(s) if s.len > 0 => rest + field_len(9, s.len),
        _ => rest,
    }
}

/// The model split around its initializers: everything before them (model fields up to the
/// graph's header, the nodes and name), and everything after (inputs, outputs, opsets, metadata).
fn split(mut model: ModelProto, inits_len: u64) -> (Vec<u8>, Vec<u8>) {
    let graph = model.graph.take().unwrap_or_default();
    let (opset_import, metadata_props) =
        (std::mem::take(&mut model.opset_import), std::mem::take(&mut model.metadata_props));
    let graph_head = GraphProto { node: graph.node, name: graph.name, ..Default::default() }.encode_to_vec();
    let graph_tail = GraphProto { input: graph.input, output: graph.output, ..Default::default() }.encode_to_vec();
    // prost writes fields in tag order: ModelProto's graph (7) sits between doc_string (6) and
    // opset_import (8), and GraphProto's initializers (5) between name (2) and input (11).
    let mut head = model.encode_to_vec();
    field_header(7, graph_head.len() as u64 + inits_len + graph_tail.len() as u64, &mut head);
    head.extend_from_slice(&graph_head);
    let mut tail = graph_tail;
    ModelProto { opset_import, metadata_props, ..Default::default() }.encode(&mut tail).expect("a Vec grows");
    (head, tail)
}

/// Serializes a model built in memory.
pub fn encode_in_memory(model: ModelProto, inits: Vec<Init>) -> Vec<u8> {
    let inits_len: u64 = inits.iter().map(|i| field_len(5, init_len(i))).sum();
    let (mut out, tail) = split(model, inits_len);
    for init in inits {
        field_header(5, init.tensor.encoded_len() as u64, &mut out);
        init.tensor.encode(&mut out).expect("a Vec grows");
    }
    out.extend_from_slice(&tail);
    out
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `model.onnx` (and its external data) into `dir`, as `Graph::write` describes.
/// The model goes to a `.partial` file first, renamed once complete.
pub fn write(
    dir: &Path,
    model: ModelProto,
    mut inits: Vec<Init>,
    spill: Option<Spill>,
    external: bool,
) -> anyhow::Result<Written> {
    let mut spill = spill.context("Graph::write needs a graph made by Graph::spilling")?;
    spill
        .file
        .flush()
        .map_err(|e| spill.error.take().unwrap_or(e))
        .with_context(|| format!("writing {}", spill.path.display()))?;
    if let Some(e) = spill.error.take() {
        return Err(e).with_context(|| format!("writing {}", spill.path.display()));
    }
    let embedded: u64 = inits.iter().map(|i| field_len(5, init_len(i))).sum();
    let external = external || embedded > MAX_EMBEDDED;
    if external {
        for init in &mut inits {
            if let Some(s) = init.spilled.take() {
                let entry = |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
                init.tensor.external_data = vec![
                    entry("location", DATA_FILE.into()),
                    entry("offset", s.offset.to_string()),
                    entry("length", s.len.to_string()),
                ];
                init.tensor.data_location = 1;
            }
        }
    }
    let inits_len: u64 = inits.iter().map(|i| field_len(5, init_len(i))).sum();
    let (head, tail) = split(model, inits_len);
    let partial = dir.join("model.onnx.partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = Hashing { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new(), bytes: 0 };
    let mut data = File::open(&spill.path).with_context(|| format!("reading {}", spill.path.display()))?;
    let mut written = || -> std::io::Result<()> {
        out.write_all(&head)?;
        let mut header = Vec::with_capacity(32);
        for init in &inits {
            header.clear();
            field_header(5, init_len(init), &mut header);
            init.tensor.encode(&mut header).expect("a Vec grows");
            if let Some(s) = init.spilled.filter(|s| s.len > 0) {
                field_header(9, s.len, &mut header);
                out.write_all(&header)?;
                data.seek(SeekFrom::Start(s.offset))?;
                std::io::copy(&mut (&mut data).take(s.len), &mut out)?;
            } else {
                out.write_all(&header)?;
            }
        }
        out.write_all(&tail)?;
        out.flush()
    };
    written().with_context(|| format!("writing {}", partial.display()))?;
    let (mut hasher, mut bytes) = (out.hasher, out.bytes);
    if external {
        drop(data);
        let target = dir.join(DATA_FILE);
        std::fs::rename(&spill.path, &target).with_context(|| format!("writing {}", target.display()))?;
        hasher.update_reader(File::open(&target)?)?;
        bytes += spill.len;
    }
    std::fs::rename(&partial, dir.join("model.onnx"))
        .with_context(|| format!("writing {}", dir.join("model.onnx").display()))?;
    Ok(Written { hash: format!("blake3:{}", hasher.finalize().to_hex()), bytes, external })
}

/// The hash recorded for a model file (`weights_hash`): the file, then its external data
/// (`<file>.data` beside it) when there is some. A wrapflow import lists the files it wrote in
/// `config.json`; a `.data` file it does not list is a leftover and not hashed.
pub fn model_hash(model: &Path) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut data = model.as_os_str().to_owned();
    data.push(".data");
    let data = PathBuf::from(data);
    let listed = model.parent().and_then(|dir| written_files(&dir.join("config.json")));
    let leftover = listed.is_some_and(|files| {
        data.file_name().is_none_or(|name| !files.iter().any(|f| std::ffi::OsStr::new(f) == name))
    });
    let data_part = (!leftover).then_some((data, false));
    for (path, required) in std::iter::once((model.to_path_buf(), true)).chain(data_part) {
        match std::fs::File::open(&path) {
            Ok(f) => {
                hasher.update_reader(f).with_context(|| format!("reading {}", path.display()))?;
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

/// The weight files a wrapflow import recorded in `config.json` (`wrapflow.files`), if any.
fn written_files(config: &Path) -> Option<Vec<String>> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(config).ok()?).ok()?;
    let files = json.get("wrapflow")?.get("files")?.as_array()?;
    Some(files.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_hash_covers_the_files_an_import_wrote_and_no_leftover() {
        let dir = tempfile::TempDir::new().unwrap();
        let model = dir.path().join("model.onnx");
        std::fs::write(&model, b"graph").unwrap();
        std::fs::write(dir.path().join("model.onnx.data"), b"weights").unwrap();
        let hash = |bytes: &[u8]| format!("blake3:{}", blake3::hash(bytes).to_hex());
        // Not a wrapflow import: external data beside the model is part of it.
        assert_eq!(model_hash(&model).unwrap(), hash(b"graphweights"));
        let config = |files: &str| {
            let json = format!(r#"{{"model_type": "llama", "wrapflow": {{"files": {files}}}}}"#);
            std::fs::write(dir.path().join("config.json"), json).unwrap();
        };
        config(r#"["model.onnx", "model.onnx.data"]"#);
        assert_eq!(model_hash(&model).unwrap(), hash(b"graphweights"));
        // An import that kept its weights inline: the .data file is an earlier import's.
        config(r#"["model.onnx"]"#);
        assert_eq!(model_hash(&model).unwrap(), hash(b"graph"));
    }
}
