//! A job's timestamps: the segment (the input between two checkpoints) in the high 32 bits,
//! then the input object's rank in input order, then a batch count within the object. Times
//! therefore follow input order, which is what "earlier" means for dedup, on any number of
//! workers.

/// Bits of a timestamp below the segment number.
pub const SEGMENT_SHIFT: u32 = 32;

/// Bits of a timestamp, below the segment, that number an input object in input order; the bits
/// below those count batches within the object.
const RANK_SHIFT: u32 = 16;
/// The most objects a segment may hold while each gets its own times.
pub const MAX_SEGMENT_OBJECTS: usize = 1 << (SEGMENT_SHIFT - RANK_SHIFT);

/// The time of batch `n` of the object of rank `rank` in segment `seg`: times follow input
/// order, so "earlier" in dedup means earlier in the input whatever the workers.
pub fn input_time(seg: u64, rank: u64, n: u64) -> u64 {
    let low = (1u64 << RANK_SHIFT) - 1;
    (seg << SEGMENT_SHIFT) | (rank.min((1 << (SEGMENT_SHIFT - RANK_SHIFT)) - 1) << RANK_SHIFT) | n.min(low)
}

#[cfg(test)]
mod tests {
    use super::input_time;

    #[test]
    fn times_follow_segment_then_object_then_batch() {
        assert!(input_time(0, 5, 9) < input_time(0, 6, 0));
        assert!(input_time(0, 65_535, 65_535) < input_time(1, 0, 0));
        assert_eq!(input_time(2, 1, 3) >> 32, 2);
        // Past its bits an object's batches share a time: they never spill into the next object.
        assert_eq!(input_time(0, 1, 70_000), input_time(0, 1, 65_535));
        assert!(input_time(0, 1, 70_000) < input_time(0, 2, 0));
    }
}
