//! The bus conformance checks against `LocalBus` (one bus, three nodes)
//! and `NatsBus` (three connections on one fresh stream and subject
//! prefix).

mod common;

use common::conformance::{self as c, Collector};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_cluster::{BusOptions, NatsBus};
use tern_core::bus::{Bus, Envelope, NodeId};
use tern_core::LocalBus;

const NODES: [NodeId; 3] = [1, 2, 3];

fn nats_opts(tag: &str) -> BusOptions {
    let name = common::unique(tag);
    BusOptions {
        stream: name.to_uppercase(),
        subject_prefix: format!("terntest.{name}"),
        ..BusOptions::default()
    }
}

/// Three buses on one fresh stream, or None when NATS is down.
async fn nats(opts: &BusOptions) -> Option<Vec<NatsBus>> {
    let url = common::nats_url();
    let mut out = Vec::new();
    for _ in NODES {
        match NatsBus::connect(&url, opts.clone()).await {
            Ok(b) => out.push(b),
            Err(e) => {
                common::unreachable("NATS", &url, e);
                return None;
            }
        }
    }
    Some(out)
}

async fn delete_stream(bus: &NatsBus, stream: &str) {
    let js = async_nats::jetstream::new(bus.client().clone());
    let _ = js.delete_stream(stream).await;
}

fn pairs(buses: &[NatsBus]) -> Vec<(&dyn Bus, NodeId)> {
    buses
        .iter()
        .zip(NODES)
        .map(|(b, n)| (b as &dyn Bus, n))
        .collect()
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        mod local {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let bus = LocalBus::new();
                    let nodes: Vec<(&dyn Bus, NodeId)> =
                        NODES.iter().map(|n| (&bus as &dyn Bus, *n)).collect();
                    let got = c::start_all(&nodes).await;
                    c::$name(&nodes, &got).await;
                }
            )*
        }
        mod nats_bus {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let opts = nats_opts("t");
                    let Some(buses) = nats(&opts).await else { return };
                    let nodes = pairs(&buses);
                    let got = c::start_all(&nodes).await;
                    c::$name(&nodes, &got).await;
                    delete_stream(&buses[0], &opts.stream).await;
                }
            )*
        }
    };
}

checks! {
    bus_delivers_to_addressed_in_order,
    bus_round_trips_every_kind,
    bus_forwards_to_addressed_node,
    bus_carries_packed_pushes_past_its_size_limit,
}

#[tokio::test]
async fn local_bus_delivers_all_despite_losses() {
    let bus = LocalBus::new();
    let nodes: Vec<(&dyn Bus, NodeId)> = NODES.iter().map(|n| (&bus as &dyn Bus, *n)).collect();
    let got = c::start_all(&nodes).await;
    c::bus_delivers_all_despite_losses(&nodes, &got, 1000).await;
}

/// 30 % of incoming envelopes are lost on the receiving side: JetStream
/// redelivers them after ack_wait, so every one still arrives.
#[tokio::test]
async fn nats_bus_delivers_all_despite_losses() {
    let opts = BusOptions {
        drop_inbound_percent: 30,
        ack_wait_ms: 300,
        ..nats_opts("l")
    };
    let Some(buses) = nats(&opts).await else {
        return;
    };
    let nodes = pairs(&buses);
    let got = c::start_all(&nodes).await;
    c::bus_delivers_all_despite_losses(&nodes, &got, 1000).await;
    delete_stream(&buses[0], &opts.stream).await;
}

/// A malformed envelope is acked and skipped; what follows still arrives.
#[tokio::test]
async fn nats_bus_skips_malformed() {
    let opts = BusOptions {
        ack_wait_ms: 300,
        ..nats_opts("m")
    };
    let Some(buses) = nats(&opts).await else {
        return;
    };
    let nodes = pairs(&buses);
    let got = c::start_all(&nodes).await;
    let js = async_nats::jetstream::new(buses[0].client().clone());
    js.publish(
        format!("{}.2", opts.subject_prefix),
        "not an envelope".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let env = Envelope::GroupChanged {
        gid: "after".into(),
    };
    buses[0].publish(&[2], &env).unwrap();
    got[1].wait_for(1, Duration::from_secs(10)).await;
    // Past ack_wait: the bad one was acked, not redelivered.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(got[1].take(), [env]);
    delete_stream(&buses[0], &opts.stream).await;
}

/// A full outbound queue says so instead of waiting.
#[tokio::test]
async fn nats_bus_full_queue() {
    let opts = BusOptions {
        queue: 4,
        ..nats_opts("q")
    };
    let Some(buses) = nats(&opts).await else {
        return;
    };
    let env = Envelope::GroupChanged { gid: "g".into() };
    let full = (0..10_000).any(|_| {
        matches!(
            buses[0].publish(&[2], &env),
            Err(tern_core::PlumbingError::Full("bus"))
        )
    });
    assert!(full);
    delete_stream(&buses[0], &opts.stream).await;
}

/// One publish -> receive round trip, measured (printed with
/// `--nocapture`).
#[tokio::test]
async fn nats_bus_round_trip_latency() {
    let opts = nats_opts("r");
    let Some(buses) = nats(&opts).await else {
        return;
    };
    let nodes = pairs(&buses);
    let got = c::start_all(&nodes).await;
    let env = Envelope::GroupChanged { gid: "ping".into() };
    let rounds = 200;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        buses[0].publish(&[2], &env).unwrap();
        got[1].wait_for(i + 1, Duration::from_secs(10)).await;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    eprintln!(
        "NATS publish->receive over {rounds} rounds: median {:?}, p90 {:?}, max {:?}",
        times[rounds / 2],
        times[rounds * 9 / 10],
        times[rounds - 1]
    );
    // Throughput: a burst of 10 000 envelopes.
    let burst = 10_000;
    let before = got[1].len();
    let start = Instant::now();
    for _ in 0..burst {
        while let Err(tern_core::PlumbingError::Full(_)) = buses[0].publish(&[2], &env) {
            tokio::task::yield_now().await;
        }
    }
    got[1]
        .wait_for(before + burst, Duration::from_secs(60))
        .await;
    eprintln!("NATS burst of {burst}: {:?}", start.elapsed());
    let _: Arc<Collector> = got[1].clone();
    delete_stream(&buses[0], &opts.stream).await;
}
