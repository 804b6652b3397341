//! The server frame types of `tern_proto::wire`, as a client parses them:
//! any bytes either fail cleanly or give a value that serializes and
//! parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_proto::wire::{ErrorBody, ErrorFrame, MsgPush, OfflineDone, Receipt};

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_string(&v).expect("serializes");
        let back: T = serde_json::from_str(&text).expect("parses back");
        assert_eq!(back, v, "{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => round_trip::<MsgPush<'static>>(rest),
        1 => round_trip::<Receipt<'static>>(rest),
        2 => round_trip::<ErrorFrame<'static>>(rest),
        3 => round_trip::<ErrorBody<'static>>(rest),
        _ => round_trip::<OfflineDone>(rest),
    }
});
