//! The outcome of one run: printed as a table or one JSON object, and with
//! `--out` also written to disk with its plots.

use super::stats::Lat;
use super::Common;
use serde::Serialize;

/// One run's figures. Latencies are send->deliver unless prefixed `ok_`
/// (send->`ok`, i.e. durably stored).
#[derive(Serialize, Default)]
pub struct Report {
    pub scenario: &'static str,
    /// Offered rate, messages per second (0 for `connect`).
    pub offered_rate: f64,
    pub duration_s: f64,
    pub conns: usize,
    pub msgs_sent: u64,
    pub msgs_ok: u64,
    /// Stored (acknowledged with `ok`) messages per second of sending.
    pub msgs_per_s: f64,
    pub deliveries: u64,
    /// Pushed messages received by all clients, per second of sending.
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub ok_p50_ms: f64,
    pub ok_p99_ms: f64,
    pub ok_max_ms: f64,
    /// `error` frames, failed connects and broken connections.
    pub errors: u64,
    /// Stored messages a receiver had not been pushed when the drain time
    /// ended but found in its history afterwards (`None` for rooms).
    pub late: Option<u64>,
    /// Stored messages (answered `ok`) a receiver was neither pushed nor
    /// finds in its history afterwards (`None` for rooms, which drop by
    /// design, see `dropped`).
    pub lost: Option<u64>,
    /// Stored messages not pushed whose receiver's connection was gone, so
    /// its history could not be read.
    pub unchecked: Option<u64>,
    /// The bench's connections the server closed, by close code (4008: a
    /// slow reader or a rate limit).
    pub closed: std::collections::BTreeMap<u16, u64>,
    /// Duplicate deliveries (same seq twice on one device).
    pub duplicates: u64,
    /// Room messages not delivered because of the per-device rate cap.
    pub dropped: Option<u64>,
    /// The bench's own CPU use, percent of one core.
    pub client_cpu_pct: f64,
    /// The bench's own CPU time over the run (user + system), seconds.
    pub client_cpu_s: f64,
    pub connect_per_s: Option<f64>,
    pub server_rss_kb_before: Option<u64>,
    pub server_rss_kb_after: Option<u64>,
    pub server_rss_kb_per_conn: Option<f64>,
    #[serde(skip)]
    pub deliver: Lat,
    #[serde(skip)]
    pub ok: Lat,
}

impl Report {
    /// Fills the latency fields from the merged recorders.
    pub fn set_latencies(&mut self, deliver: Lat, ok: Lat) {
        self.p50_ms = deliver.ms(0.5);
        self.p90_ms = deliver.ms(0.9);
        self.p99_ms = deliver.ms(0.99);
        self.max_ms = deliver.max_ms();
        self.ok_p50_ms = ok.ms(0.5);
        self.ok_p99_ms = ok.ms(0.99);
        self.ok_max_ms = ok.max_ms();
        self.deliver = deliver;
        self.ok = ok;
    }

    fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![("scenario", self.scenario.to_owned())];
        let mut add = |k: &'static str, v: String| rows.push((k, v));
        add("connections", self.conns.to_string());
        if let Some(c) = self.connect_per_s {
            add("connects/s", format!("{c:.0}"));
        }
        if self.scenario != "connect" {
            add("offered rate", format!("{:.0} msgs/s", self.offered_rate));
            add("duration", format!("{:.1} s", self.duration_s));
            add(
                "sent / ok",
                format!("{} / {}", self.msgs_sent, self.msgs_ok),
            );
            add("stored msgs/s", format!("{:.0}", self.msgs_per_s));
            add("deliveries", self.deliveries.to_string());
            add("deliveries/s", format!("{:.0}", self.deliveries_per_s));
            add(
                "send->deliver",
                format!(
                    "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
                ),
            );
            if self.msgs_ok > 0 && self.scenario != "room" {
                add(
                    "send->ok",
                    format!(
                        "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                        self.ok_p50_ms, self.ok_p99_ms, self.ok_max_ms
                    ),
                );
            }
            add("duplicates", self.duplicates.to_string());
        }
        add("errors", self.errors.to_string());
        if let (Some(late), Some(lost), Some(unchecked)) = (self.late, self.lost, self.unchecked) {
            add(
                "late / lost",
                format!("{late} / {lost} (unchecked {unchecked})"),
            );
        }
        if !self.closed.is_empty() {
            let codes: Vec<String> = self
                .closed
                .iter()
                .map(|(code, n)| format!("{n} x {code}"))
                .collect();
            add("closed by server", codes.join(", "));
        }
        if let Some(d) = self.dropped {
            add("dropped (cap)", d.to_string());
        }
        add(
            "client cpu",
            format!(
                "{:.0} % of a core ({:.2} s)",
                self.client_cpu_pct, self.client_cpu_s
            ),
        );
        if let (Some(b), Some(a)) = (self.server_rss_kb_before, self.server_rss_kb_after) {
            add("server rss", format!("{b} KiB -> {a} KiB"));
        }
        if let Some(p) = self.server_rss_kb_per_conn {
            add("rss per conn", format!("{p:.2} KiB"));
        }
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:>w$}  {v}\n"))
            .collect()
    }
}

/// Prints the report and, with `--out`, writes `<scenario>.json` and plots.
pub fn emit(common: &Common, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string(report)?;
    if common.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    if let Some(dir) = &common.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{}.json", report.scenario)), &json)?;
        if !report.deliver.hist().is_empty() {
            super::plot::latency_over_time(
                &dir.join(format!("{}-latency-time.svg", report.scenario)),
                report,
            )?;
            super::plot::latency_distribution(
                &dir.join(format!("{}-latency-dist.svg", report.scenario)),
                report,
            )?;
        }
    }
    Ok(())
}
