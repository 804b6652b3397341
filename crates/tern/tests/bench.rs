//! `tern bench` end to end: a real `tern serve` child process driven by real
//! `tern bench` child processes. Checks the report's accounting (every
//! stored message delivered exactly once, nothing lost), the JSON fields the
//! protocol's users rely on, and the `--out` files. Rates are small: these
//! tests check correctness, never speed.

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::time::timeout;

mod support;
use support::{tern_cmd, Tern};

const WAIT: Duration = Duration::from_secs(60);

/// Starts a server on a free port; returns it with its base URL.
async fn server(dir: &std::path::Path) -> (Tern, String) {
    let srv = Tern::start(dir).await;
    let url = srv.url("");
    (srv, url)
}

/// Runs `tern bench <args> --json` and returns its one JSON report.
async fn bench(url: &str, pid: u32, args: &[&str]) -> Value {
    let out = timeout(
        WAIT,
        tern_cmd(&["bench"])
            .env("RUST_LOG", "warn")
            .args(args)
            .args(["--url", url, "--json", "--drain", "20"])
            .args(["--server-pid", &pid.to_string()])
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("bench finished in time")
    .expect("bench ran");
    assert!(
        out.status.success(),
        "tern bench {args:?} failed: {:?}",
        out.status
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per run: {text}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_group_and_room_reports_account_for_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, url) = server(&dir.path().join("data")).await;
    let pid = srv.pid();

    // 1:1: 4 pairs, 80 msgs/s for 2 s.
    let dm = bench(
        &url,
        pid,
        &["dm", "--pairs", "4", "--rate", "80", "--duration", "2"],
    )
    .await;
    for k in [
        "scenario",
        "offered_rate",
        "msgs_per_s",
        "deliveries_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "errors",
        "lost",
        "late",
        "unchecked",
        "closed",
        "client_cpu_pct",
    ] {
        assert!(dm.get(k).is_some(), "{k} missing from {dm}");
    }
    assert_eq!(dm["scenario"], "dm");
    assert_eq!(u(&dm, "errors"), 0, "{dm}");
    assert_eq!(u(&dm, "lost"), 0, "{dm}");
    assert_eq!(
        u(&dm, "late"),
        0,
        "every message pushed in the drain time: {dm}"
    );
    assert_eq!(u(&dm, "unchecked"), 0, "{dm}");
    assert_eq!(dm["closed"], serde_json::json!({}), "{dm}");
    assert_eq!(u(&dm, "duplicates"), 0, "{dm}");
    let sent = u(&dm, "msgs_sent");
    assert!(sent >= 150, "about 160 offered: {dm}");
    assert_eq!(u(&dm, "msgs_ok"), sent, "{dm}");
    assert_eq!(u(&dm, "deliveries"), sent, "one receiver per message: {dm}");
    assert!(dm["p99_ms"].as_f64().unwrap() > 0.0);

    // A second run with the same users (`--prefix`) sends new messages:
    // its client_msg_ids must not repeat the first run's, which the server
    // would answer from its dedup index without storing or pushing.
    let again = "dm --pairs 2 --rate 40 --duration 1 --prefix again";
    let again: Vec<&str> = again.split(' ').collect();
    for run in 0..2 {
        let r = bench(&url, pid, &again).await;
        let sent = u(&r, "msgs_sent");
        assert!(sent >= 30, "run {run}: about 40 offered: {r}");
        assert_eq!(u(&r, "deliveries"), sent, "run {run}: {r}");
        assert_eq!(u(&r, "late"), 0, "run {run}: {r}");
    }

    // The same load on SDK sessions (`--sdk`): the same accounting.
    let args: Vec<&str> = "dm --sdk --pairs 2 --rate 40 --duration 2"
        .split(' ')
        .collect();
    let sdk = bench(&url, pid, &args).await;
    assert_eq!(sdk["scenario"], "dm-sdk");
    assert_eq!(u(&sdk, "errors"), 0, "{sdk}");
    assert_eq!(u(&sdk, "unchecked"), 0, "{sdk}");
    let sent = u(&sdk, "msgs_sent");
    assert!(sent >= 70, "about 80 offered: {sdk}");
    assert_eq!(u(&sdk, "msgs_ok"), sent, "{sdk}");
    assert_eq!(
        u(&sdk, "deliveries"),
        sent,
        "one receiver per message: {sdk}"
    );
    assert!(sdk["client_cpu_s"].as_f64().unwrap() > 0.0, "{sdk}");

    // Group: 2 groups of 12 members, 8 online, 40 msgs/s in total. Each
    // message reaches the 8 receiving devices (the sender's own receiving
    // device included); one sender per group, so no send device gets any.
    let g = bench(
        &url,
        pid,
        &[
            "group",
            "--groups",
            "2",
            "--members",
            "12",
            "--online",
            "8",
            "--rate",
            "40",
            "--duration",
            "2",
        ],
    )
    .await;
    assert_eq!(g["scenario"], "group");
    assert_eq!(u(&g, "errors"), 0, "{g}");
    assert_eq!(u(&g, "lost"), 0, "{g}");
    assert_eq!(u(&g, "duplicates"), 0, "{g}");
    let ok = u(&g, "msgs_ok");
    assert!(ok >= 70, "about 80 offered: {g}");
    assert_eq!(u(&g, "deliveries"), ok * 8, "{g}");

    // Room: 20 members, 100 msgs/s offered for 2 s against the default cap
    // of 50 per device per second: each device gets at most the cap.
    let r = bench(
        &url,
        pid,
        &["room", "--conns", "20", "--rate", "100", "--duration", "2"],
    )
    .await;
    assert_eq!(r["scenario"], "room");
    assert_eq!(u(&r, "errors"), 0, "{r}");
    assert!(r["lost"].is_null(), "rooms drop by design: {r}");
    assert!(r["late"].is_null(), "{r}");
    let conns = u(&r, "conns");
    let ok = u(&r, "msgs_ok");
    let delivered = u(&r, "deliveries");
    assert!(ok >= 180, "about 200 offered: {r}");
    // At most the cap per device in any second: 2 s of sending, plus the
    // second the drain may reach into.
    assert!(delivered <= conns * 50 * 3, "cap exceeded: {r}");
    assert!(delivered > 0, "{r}");
    assert_eq!(u(&r, "dropped"), ok * (conns - 1) - delivered, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_spreads_over_processes_and_measures_rss() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, url) = server(&dir.path().join("data")).await;
    let pid = srv.pid();
    let c = bench(
        &url,
        pid,
        &[
            "connect",
            "--conns",
            "300",
            "--procs",
            "3",
            "--devices",
            "3",
            "--hold",
            "0",
        ],
    )
    .await;
    assert_eq!(c["scenario"], "connect");
    assert_eq!(u(&c, "conns"), 300, "{c}");
    assert_eq!(u(&c, "errors"), 0, "{c}");
    assert!(c["connect_per_s"].as_f64().unwrap() > 0.0);
    assert!(c["server_rss_kb_after"].as_u64().is_some(), "{c}");
    assert!(c["server_rss_kb_per_conn"].as_f64().is_some(), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_writes_report_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, url) = server(&dir.path().join("data")).await;
    let pid = srv.pid();
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let dm = bench(
        &url,
        pid,
        &[
            "dm",
            "--pairs",
            "2",
            "--rate",
            "20",
            "--duration",
            "1",
            "--out",
            out_s,
        ],
    )
    .await;
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dm.json")).unwrap()).unwrap();
    assert_eq!(saved, dm);
    for f in ["dm-latency-time.svg", "dm-latency-dist.svg"] {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(svg.starts_with("<svg"), "{f}");
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "{f} has a curve"
        );
    }
}
