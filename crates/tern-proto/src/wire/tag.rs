//! The `type` of each server frame: unit types that serialize as the name
//! and deserialize only from it.

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub(crate) struct TagVisitor(pub(crate) &'static str);

impl Visitor<'_> for TagVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the string {:?}", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.0 {
            Result::Ok(())
        } else {
            Err(E::invalid_value(Unexpected::Str(v), &self))
        }
    }
}

macro_rules! tags {
    ($($name:ident = $s:literal;)*) => {$(
        #[doc = concat!("`\"type\":\"", $s, "\"`.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl $name {
            pub const NAME: &'static str = $s;
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(TagVisitor($s)).map(|()| $name)
            }
        }
    )*

    /// The `type` of every frame the server sends.
    pub const ALL: [&str; [$($s),*].len()] = [$($s),*];
    };
}

tags! {
    Ok = "ok";
    Error = "error";
    Msg = "msg";
    Receipt = "receipt";
    Recalled = "recalled";
    Typing = "typing";
    Presence = "presence";
    Notify = "notify";
    RoomMsg = "room_msg";
    Batch = "batch";
    OfflineDone = "offline_done";
    Pong = "pong";
    Friend = "friend";
    // 5.1
    Edited = "edited";
    Reaction = "reaction";
    Profile = "profile";
    ConvSettings = "conv_settings";
}
