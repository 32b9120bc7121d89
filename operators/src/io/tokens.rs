//! Token shards in Megatron-LM's indexed-dataset layout (`MMIDIDX`), the `.bin` / `.idx` pair that
//! Megatron-core's `IndexedDataset` memory-maps and that NeMo, datatrove and dolma write too.
//! One document is one sequence: its ids followed by the EOS id, as Megatron's
//! `preprocess_data.py --append-eod` writes them.
//!
//! Layout (all integers little-endian), as `megatron/core/datasets/indexed_dataset.py`
//! (`_IndexWriter`, megatron-core 0.16) writes it:
//!
//! ```text
//! NAME.bin   every sequence's ids back to back, in the dtype named by the index
//! NAME.idx   header            b"MMIDIDX\x00\x00"    9 bytes
//!            version           u64 = 1
//!            dtype code        u8: 8 = uint16 (vocabulary < 65,500), 4 = int32 (otherwise)
//!            sequence count    u64 (S)
//!            document count    u64 (D = S + 1: the document indices start with 0)
//!            sequence lengths  i32 × S              ids per sequence
//!            sequence pointers i64 × S              byte offset of each sequence in NAME.bin
//!            document indices  i64 × D              0, 1, ..., S: document k is sequence k
//! ```
//!
//! Megatron has no unsigned 32-bit code: ids of a vocabulary of 65,500 or more are int32, as
//! `DType.optimal_dtype` picks them. The EOS id is not in the index; the manifest and each
//! document's last id carry it.

use anyhow::{Context, bail};

const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// Header bytes before the sequence lengths.
const HEADER: usize = 9 + 8 + 1 + 8 + 8;
/// Megatron's `DType` codes of the two id types it picks for token ids.
const UINT16: u8 = 8;
const INT32: u8 = 4;
/// Below this vocabulary size Megatron stores ids as uint16 (`DType.optimal_dtype`).
const UINT16_VOCAB: usize = 65_500;

/// Builds one token shard in memory.
#[derive(Clone, Debug)]
pub struct TokenShardWriter {
    code: u8,
    eos: u32,
    ids: Vec<u8>,
    lengths: Vec<u32>,
}

impl TokenShardWriter {
    /// `vocab_size` picks the id type as Megatron does (uint16 below 65,500 ids, else int32).
    pub fn new(vocab_size: usize, eos: u32) -> Self {
        let code = if vocab_size < UINT16_VOCAB { UINT16 } else { INT32 };
        TokenShardWriter { code, eos, ids: Vec::new(), lengths: Vec::new() }
    }

    /// Appends a document's ids and the EOS id as one sequence.
    pub fn push(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        for &id in ids.iter().chain(std::iter::once(&self.eos)) {
            if self.code == UINT16 {
                let v = u16::try_from(id).with_context(|| format!("token id {id} does not fit uint16"))?;
                self.ids.extend_from_slice(&v.to_le_bytes());
            } else {
                let v = i32::try_from(id).with_context(|| format!("token id {id} does not fit int32"))?;
                self.ids.extend_from_slice(&v.to_le_bytes());
            }
        }
        let len = u32::try_from(ids.len() + 1).ok().filter(|&n| n <= i32::MAX as u32);
        self.lengths.push(len.context("a document of more than 2^31 tokens")?);
        Ok(())
    }

    /// Ids written so far, EOS included.
    pub fn tokens(&self) -> u64 {
        (self.ids.len() / width(self.code)) as u64
    }

    pub fn docs(&self) -> usize {
        self.lengths.len()
    }

    /// The `.bin` and `.idx` contents.
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let s = self.lengths.len();
        let mut idx = Vec::with_capacity(HEADER + 4 * s + 8 * s + 8 * (s + 1));
        idx.extend_from_slice(MAGIC);
        idx.extend_from_slice(&1u64.to_le_bytes());
        idx.push(self.code);
        idx.extend_from_slice(&(s as u64).to_le_bytes());
        idx.extend_from_slice(&(s as u64 + 1).to_le_bytes());
        for &n in &self.lengths {
            idx.extend_from_slice(&(n as i32).to_le_bytes());
        }
        let mut pointer = 0i64;
        for &n in &self.lengths {
            idx.extend_from_slice(&pointer.to_le_bytes());
            pointer += n as i64 * width(self.code) as i64;
        }
        for k in 0..=s as i64 {
            idx.extend_from_slice(&k.to_le_bytes());
        }
        (self.ids, idx)
    }
}

fn width(code: u8) -> usize {
    if code == UINT16 { 2 } else { 4 }
}

/// A token shard read back.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenShard {
    /// Bytes per id in the `.bin`: 2 (uint16) or 4 (int32).
    pub width: u32,
    /// Token offset of each document's first id; the last is the number of ids.
    pub offsets: Vec<u64>,
    pub ids: Vec<u32>,
}

impl TokenShard {
    /// Parses a shard's `.bin` and `.idx`, checking that they agree and that every document is
    /// one sequence (the only form wrapflow writes).
    pub fn parse(bin: &[u8], idx: &[u8]) -> anyhow::Result<Self> {
        if idx.len() < HEADER || &idx[..9] != MAGIC {
            bail!("not a Megatron indexed dataset (bad MMIDIDX header)");
        }
        let u64_at = |o: usize| u64::from_le_bytes(idx[o..o + 8].try_into().expect("8 bytes"));
        let (version, code) = (u64_at(9), idx[17]);
        if version != 1 || !(code == UINT16 || code == INT32) {
            bail!("unsupported indexed dataset: version {version}, dtype code {code}");
        }
        let (s, d) = (u64_at(18) as usize, u64_at(26) as usize);
        // Counts come from the file: a hostile one must not overflow the size it implies.
        let size = s.checked_mul(12).and_then(|b| b.checked_add(d.checked_mul(8)?)).and_then(|b| b.checked_add(HEADER));
        if Some(d) != s.checked_add(1) || size != Some(idx.len()) {
            bail!("index of {} bytes does not hold {s} sequences in {d} document indices", idx.len());
        }
        let lengths = idx[HEADER..HEADER + 4 * s].chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4")));
        let mut offsets = vec![0u64];
        for n in lengths {
            offsets.push(offsets.last().expect("starts with 0") + u64::try_from(n).context("negative length")?);
        }
        let w = width(code);
        let pointers = &idx[HEADER + 4 * s..HEADER + 12 * s];
        for (k, p) in pointers.chunks_exact(8).enumerate() {
            if i64::from_le_bytes(p.try_into().expect("8")) as u64 != offsets[k] * w as u64 {
                bail!("sequence {k}'s pointer does not follow the lengths before it");
            }
        }
        for (k, v) in idx[HEADER + 12 * s..].chunks_exact(8).enumerate() {
            if i64::from_le_bytes(v.try_into().expect("8")) != k as i64 {
                bail!("document index {k} is not {k}: a document of several sequences");
            }
        }
        let ids: Vec<u32> = match w {
            2 => bin.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect(),
            _ => bin.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4")) as u32).collect(),
        };
        if !bin.len().is_multiple_of(w) || *offsets.last().expect("s + 1 offsets") != ids.len() as u64 {
            bail!("token data holds {} ids, the index says {}", ids.len(), offsets.last().copied().unwrap_or(0));
        }
        Ok(TokenShard { width: w as u32, offsets, ids })
    }

    /// Document `i`'s ids, its EOS included.
    pub fn doc(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn docs(&self) -> usize {
        self.offsets.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_both_widths_and_bad_files_are_refused() {
        for (vocab, big) in [(49_152, 49_151u32), (65_500, 65_499), (200_000, 199_999)] {
            let mut w = TokenShardWriter::new(vocab, 0);
            w.push(&[5, 6, 7]).unwrap();
            w.push(&[]).unwrap();
            w.push(&[big]).unwrap();
            assert_eq!((w.docs(), w.tokens()), (3, 7));
            let (bin, idx) = w.finish();
            let s = TokenShard::parse(&bin, &idx).unwrap();
            assert_eq!(s.width, if vocab >= 65_500 { 4 } else { 2 });
            assert_eq!((s.doc(0), s.doc(1), s.doc(2)), (&[5, 6, 7, 0][..], &[0][..], &[big, 0][..]));
            assert!(TokenShard::parse(&bin[..bin.len() - 2], &idx).is_err(), "truncated data");
            assert!(TokenShard::parse(&bin, &idx[..idx.len() - 8]).is_err(), "truncated index");
            let mut huge = idx.clone();
            huge[18..26].copy_from_slice(&u64::MAX.to_le_bytes());
            assert!(TokenShard::parse(&bin, &huge).is_err(), "a sequence count that overflows");
            let mut bad = idx.clone();
            bad[HEADER + 12 * 3 + 8] = 2;
            assert!(TokenShard::parse(&bin, &bad).is_err(), "a document index out of step");
        }
        assert!(TokenShardWriter::new(1000, 0).push(&[70_000]).is_err(), "an id beyond uint16 is an error");
        assert!(TokenShardWriter::new(1 << 20, 0).push(&[u32::MAX]).is_err(), "an id beyond int32 is an error");
    }
}
