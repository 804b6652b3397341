//! Message ids: 64-bit, time-ordered, unique across nodes (snowflake
//! layout: 41 bits of ms since 2024-01-01, 10 bits of node, 12 bits of
//! sequence).
//!
//! A generator keeps its clock state in memory only: a node starts it from
//! the highest id the store holds with its node bits
//! ([`IdGen::resume`]), so that a clock that stepped back across a restart
//! cannot repeat an id (the store's UNIQUE index on `msg_id` would refuse
//! it).

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

    /// A generator whose ids are all above `floor`, the highest id stored
    /// with this node's bits (0 when none): it carries on counting from
    /// there when the clock is behind it.
    pub fn resume(node: u16, floor: u64) -> IdGen {
        let mut g = IdGen::new(node);
        if floor != 0 {
            debug_assert_eq!(node_of(floor), g.node as u16, "floor of another node");
            g.last_ms = (floor >> (NODE_BITS + SEQ_BITS)) as i64 + EPOCH_MS;
            g.seq = floor & SEQ_MASK;
        }
        g
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

/// The node bits of an id.
pub fn node_of(id: u64) -> u16 {
    ((id >> SEQ_BITS) & ((1 << NODE_BITS) - 1)) as u16
}

/// The SQL expression (SQLite, PostgreSQL and MySQL alike) of a `msg_id`
/// column's node bits, for [`crate::store::Store::max_msg_id`].
pub const SQL_NODE_OF_MSG_ID: &str = "((msg_id >> 12) & 1023)";

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

    #[test]
    fn resumed_ids_stay_above_the_floor_when_the_clock_is_behind() {
        let mut before = IdGen::new(7);
        // Issued an hour "in the future" before the restart.
        let floor = (0..10)
            .map(|_| before.next(EPOCH_MS + 3_600_000))
            .max()
            .unwrap();
        assert_eq!(node_of(floor), 7);
        let mut after = IdGen::resume(7, floor);
        let mut last = floor;
        for _ in 0..10_000 {
            let id = after.next(EPOCH_MS + 1_000);
            assert!(id > last);
            assert_eq!(node_of(id), 7);
            last = id;
        }
        // Once the clock passes the floor, ids follow the clock again.
        let id = after.next(EPOCH_MS + 7_200_000);
        assert_eq!(id >> (NODE_BITS + SEQ_BITS), 7_200_000);
        // No floor: a plain generator.
        assert_eq!(
            IdGen::resume(7, 0).next(EPOCH_MS + 5),
            IdGen::new(7).next(EPOCH_MS + 5)
        );
    }

    #[test]
    fn sql_expression_matches_node_of() {
        assert_eq!(
            SQL_NODE_OF_MSG_ID,
            format!("((msg_id >> {SEQ_BITS}) & {})", (1 << NODE_BITS) - 1)
        );
    }
}
