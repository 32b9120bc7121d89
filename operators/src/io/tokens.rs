//! Token shards: text re-tokenized for training, as a flat binary of token ids plus an index of
//! document boundaries. A trainer memory-maps the `.bin` and slices documents with the `.idx`.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! NAME.bin   the ids of every document, each followed by the EOS id, as u16 (vocabulary ≤ 65,536)
//!            or u32
//! NAME.idx   magic  b"WFTOKIDX"            8 bytes
//!            version u32 = 1
//!            width   u32 = 2 or 4         bytes per id in NAME.bin
//!            eos     u32                  the id written after each document
//!            _pad    u32 = 0
//!            docs    u64                  number of documents
//!            offsets u64 × (docs + 1)     token offset of each document's first id; the last is
//!                                         the total number of ids in NAME.bin
//! ```
//!
//! Document `i` is ids `offsets[i] .. offsets[i+1]` (its EOS included). numpy reads it with
//! `np.frombuffer(idx, '<u8', offset=32)` and `np.memmap(bin, '<u2' or '<u4')`.

use anyhow::{Context, bail};

const MAGIC: &[u8; 8] = b"WFTOKIDX";
const HEADER: usize = 32;

/// Builds one token shard in memory.
#[derive(Clone, Debug)]
pub struct TokenShardWriter {
    width: u32,
    eos: u32,
    ids: Vec<u8>,
    offsets: Vec<u64>,
}

impl TokenShardWriter {
    /// `vocab_size` picks the id width (u16 when every id fits).
    pub fn new(vocab_size: usize, eos: u32) -> Self {
        let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
        TokenShardWriter { width, eos, ids: Vec::new(), offsets: vec![0] }
    }

    /// Appends a document's ids and the EOS id.
    pub fn push(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        for &id in ids.iter().chain(std::iter::once(&self.eos)) {
            if self.width == 2 {
                let v = u16::try_from(id).with_context(|| format!("token id {id} does not fit u16"))?;
                self.ids.extend_from_slice(&v.to_le_bytes());
            } else {
                self.ids.extend_from_slice(&id.to_le_bytes());
            }
        }
        self.offsets.push(self.tokens());
        Ok(())
    }

    /// Ids written so far, EOS included.
    pub fn tokens(&self) -> u64 {
        self.ids.len() as u64 / self.width as u64
    }

    pub fn docs(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The `.bin` and `.idx` contents.
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let mut idx = Vec::with_capacity(HEADER + 8 * self.offsets.len());
        idx.extend_from_slice(MAGIC);
        for v in [1u32, self.width, self.eos, 0] {
            idx.extend_from_slice(&v.to_le_bytes());
        }
        idx.extend_from_slice(&(self.docs() as u64).to_le_bytes());
        for o in &self.offsets {
            idx.extend_from_slice(&o.to_le_bytes());
        }
        (self.ids, idx)
    }
}

/// A token shard read back.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenShard {
    pub width: u32,
    pub eos: u32,
    pub offsets: Vec<u64>,
    pub ids: Vec<u32>,
}

impl TokenShard {
    /// Parses a shard's `.bin` and `.idx`, checking that they agree.
    pub fn parse(bin: &[u8], idx: &[u8]) -> anyhow::Result<Self> {
        if idx.len() < HEADER + 8 || &idx[..8] != MAGIC {
            bail!("not a wrapflow token index (bad magic)");
        }
        let u32_at = |o: usize| u32::from_le_bytes(idx[o..o + 4].try_into().expect("4 bytes"));
        let (version, width, eos) = (u32_at(8), u32_at(12), u32_at(16));
        if version != 1 || !(width == 2 || width == 4) {
            bail!("unsupported token index: version {version}, width {width}");
        }
        let docs = u64::from_le_bytes(idx[24..32].try_into().expect("8 bytes")) as usize;
        if idx.len() != HEADER + 8 * (docs + 1) {
            bail!("token index holds {} bytes, expected {} for {docs} documents", idx.len(), HEADER + 8 * (docs + 1));
        }
        let offsets: Vec<u64> =
            idx[HEADER..].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let ids: Vec<u32> = match width {
            2 => bin.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect(),
            _ => bin.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
        };
        if !bin.len().is_multiple_of(width as usize) || *offsets.last().expect("docs + 1 offsets") != ids.len() as u64 {
            bail!("token data holds {} ids, the index says {}", ids.len(), offsets.last().copied().unwrap_or(0));
        }
        if offsets.windows(2).any(|w| w[0] >= w[1]) || offsets[0] != 0 {
            bail!("token index offsets are not increasing from 0");
        }
        Ok(TokenShard { width, eos, offsets, ids })
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
        for (vocab, big) in [(49_152, 49_151u32), (200_000, 199_999)] {
            let mut w = TokenShardWriter::new(vocab, 0);
            w.push(&[5, 6, 7]).unwrap();
            w.push(&[]).unwrap();
            w.push(&[big]).unwrap();
            assert_eq!((w.docs(), w.tokens()), (3, 7));
            let (bin, idx) = w.finish();
            let s = TokenShard::parse(&bin, &idx).unwrap();
            assert_eq!(s.width, if vocab > 65_536 { 4 } else { 2 });
            assert_eq!((s.doc(0), s.doc(1), s.doc(2)), (&[5, 6, 7, 0][..], &[0][..], &[big, 0][..]));
            assert!(TokenShard::parse(&bin[..bin.len() - 2], &idx).is_err(), "truncated data");
            assert!(TokenShard::parse(&bin, &idx[..idx.len() - 8]).is_err(), "truncated index");
        }
        assert!(TokenShardWriter::new(1000, 0).push(&[70_000]).is_err(), "an id beyond u16 is an error");
    }
}
