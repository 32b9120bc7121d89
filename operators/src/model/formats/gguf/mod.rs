//! A reader for GGUF files (llama.cpp's model format, version 2 and 3): metadata and tensor
//! directory, with the tensor bytes left in place until asked for.

pub mod ggml;

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(v) => Some(*v),
            Value::U64(v) => Some(*v as f64),
            Value::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A tensor's name, shape (GGUF order: the fastest-varying dimension first), type and place.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file.
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// The file's bytes: memory-mapped when opened from a path, so a model's weights are paged in
    /// as they are converted instead of read into memory whole.
    data: Data,
    data_start: usize,
}

/// GGML tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Elements one tensor may hold: far above any model's largest tensor, and low enough that its
/// size in bytes at any type fits in 64 bits.
const MAX_ELEMENTS: u64 = 1 << 48;
/// Arrays inside arrays that a file may nest.
const MAX_ARRAY_DEPTH: usize = 4;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(n <= self.b.len() - self.pos, "truncated GGUF file at byte {}", self.pos);
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn string(&mut self) -> anyhow::Result<String> {
        let n = self.u64()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// A value of type `ty`; `depth` counts the arrays it is inside.
    fn value(&mut self, ty: u32, depth: usize) -> anyhow::Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.take(1)?[0] as u64),
            1 => Value::I64(self.take(1)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2)?.try_into()?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2)?.try_into()?) as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(self.u32()? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.take(4)?.try_into()?) as f64),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                // Real files nest at most one level (arrays of strings or numbers); a deep nest
                // is hostile and would overflow the stack.
                ensure!(
                    depth < MAX_ARRAY_DEPTH,
                    "GGUF arrays nested deeper than {MAX_ARRAY_DEPTH} at byte {}",
                    self.pos
                );
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(inner, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_le_bytes(self.take(8)?.try_into()?)),
            other => bail!("unknown GGUF value type {other}"),
        })
    }
}

/// A GGUF file's bytes: mapped from disk, or read into memory.
enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }
}

impl Gguf {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        // SAFETY: the map is read-only; a file changed under a running import is a user error
        // that can at worst give wrong weights, which the import's hash then records.
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        Self::parse_from(Data::Mapped(map)).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(data: Vec<u8>) -> anyhow::Result<Self> {
        Self::parse_from(Data::Owned(data))
    }

    fn parse_from(data: Data) -> anyhow::Result<Self> {
        let mut r = Reader { b: data.bytes(), pos: 0 };
        ensure!(r.take(4)? == b"GGUF", "not a GGUF file (bad magic)");
        let version = r.u32()?;
        ensure!((2..=3).contains(&version), "GGUF version {version} is not supported (2 or 3)");
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            metadata.insert(key, r.value(ty, 0)?);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()?;
            ensure!(nd <= MAX_DIMS, "tensor {name}: {nd} dimensions (GGUF has at most {MAX_DIMS})");
            let dims = (0..nd).map(|_| r.u64()).collect::<anyhow::Result<Vec<_>>>()?;
            let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
            ensure!(elements.is_some(), "tensor {name}: dimensions {dims:?} hold more than 2^48 elements");
            let ggml_type = r.u32()?;
            let offset = r.u64()?;
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }
        let align = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32);
        ensure!(align.is_power_of_two() && align <= 1 << 20, "general.alignment {align} is not a power of two ≤ 1 MiB");
        let data_start = r.pos.div_ceil(align as usize) * align as usize;
        Ok(Gguf { version, metadata, tensors, data, data_start })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<&Value> {
        self.metadata.get(key).with_context(|| format!("GGUF metadata has no {key}"))
    }

    pub fn u64(&self, key: &str) -> anyhow::Result<u64> {
        self.get(key)?.as_u64().with_context(|| format!("{key} is not an integer"))
    }

    pub fn str(&self, key: &str) -> anyhow::Result<&str> {
        self.get(key)?.as_str().with_context(|| format!("{key} is not a string"))
    }

    pub fn tensor(&self, name: &str) -> anyhow::Result<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name).with_context(|| format!("GGUF has no tensor {name}"))
    }

    /// The raw bytes of a tensor, `len` bytes from its offset.
    pub fn tensor_bytes(&self, t: &TensorInfo, len: usize) -> anyhow::Result<&[u8]> {
        let range = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .and_then(|start| Some(start..start.checked_add(len)?));
        range.and_then(|r| self.data.bytes().get(r)).with_context(|| format!("tensor {} lies outside the file", t.name))
    }

    /// Lets the kernel drop a mapped tensor's pages once it has been read: an import reads each
    /// tensor once, and the mapped pages it touched would otherwise stay resident, adding the
    /// whole file to the import's memory. Reading the tensor again maps it in again.
    pub fn release(&self, t: &TensorInfo, len: usize) {
        if let Data::Mapped(map) = &self.data {
            release_range(map, self.data_start + t.offset as usize, len);
        }
    }
}

/// `MADV_DONTNEED` on the whole pages inside `start..start + len` of a read-only file map.
pub(super) fn release_range(map: &memmap2::Mmap, start: usize, len: usize) {
    let page = 4096;
    let (from, to) = (start.div_ceil(page) * page, ((start + len).min(map.len()) / page) * page);
    if to > from {
        // SAFETY: the map is a read-only shared map of a file: dropped pages are read back from
        // the file, unchanged, if touched again (the hazard of DONTNEED is for private writable
        // maps, whose changes it discards).
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
    }
}
