//! A u64 as a decimal string (message ids, so JavaScript keeps every
//! digit); for `#[serde(with = "decimal")]`.

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_str(DecimalVisitor)
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a u64 as a decimal string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        // `parse` would also take a leading `+`.
        if v.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = v.parse() {
                return Ok(n);
            }
        }
        Err(E::invalid_value(Unexpected::Str(v), &self))
    }
}
