//! Message ids: 64-bit, time-ordered, unique across nodes (snowflake
//! layout: 41 bits of ms since 2024-01-01, 10 bits of node, 12 bits of
//! sequence).

const EPOCH_MS: i64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

#[derive(Debug)]
pub struct IdGen {
    node: u64,
    last_ms: i64,
    seq: u64,
}

impl IdGen {
    pub fn new(node: u16) -> IdGen {
        IdGen {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            last_ms: 0,
            seq: 0,
        }
    }

    /// A new id. Never goes backwards, even if the clock does: it then keeps
    /// counting on the last millisecond, borrowing from the next one.
    pub fn next(&mut self, now_ms: i64) -> u64 {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.seq = 0;
        } else {
            self.seq += 1;
            if self.seq > SEQ_MASK {
                self.last_ms += 1;
                self.seq = 0;
            }
        }
        let t = (self.last_ms - EPOCH_MS).max(0) as u64;
        (t << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_when_clock_stalls_or_jumps_back() {
        let mut g = IdGen::new(3);
        let mut last = 0;
        for i in 0..10_000 {
            let now = if i == 5000 {
                EPOCH_MS + 10
            } else {
                EPOCH_MS + 1_000
            };
            let id = g.next(now);
            assert!(id > last);
            last = id;
        }
        assert_eq!((last >> SEQ_BITS) & 1023, 3);
    }
}
