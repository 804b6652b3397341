//! Prometheus metrics. The `metrics` facade is process-global by design;
//! the recorder is installed once per process and every server in it
//! renders the same registry.

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder unless one is installed already (by an
/// embedding application, for instance); then `/metrics` is empty.
pub fn prometheus() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("tern_storage_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tern_append_batch_size".into()),
                        &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0],
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Handles of the hot-path metrics, looked up once.
#[derive(Clone)]
pub struct Hot {
    pub connections: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub redeliveries: Counter,
    pub rate_limited: Counter,
    pub lagging: Counter,
}

impl Hot {
    pub fn new() -> Hot {
        Hot {
            connections: metrics::gauge!("tern_connections"),
            frames_in: metrics::counter!("tern_frames_in_total"),
            frames_out: metrics::counter!("tern_frames_out_total"),
            redeliveries: metrics::counter!("tern_redeliveries_total"),
            rate_limited: metrics::counter!("tern_rate_limited_total"),
            lagging: metrics::counter!("tern_lagging_connections_total"),
        }
    }

    /// Makes every metric appear in `/metrics` from the start.
    pub fn describe() {
        metrics::describe_gauge!("tern_connections", "Authenticated WebSocket connections");
        metrics::describe_counter!("tern_frames_in_total", "Frames received from clients");
        metrics::describe_counter!("tern_frames_out_total", "Frames written to clients");
        metrics::describe_counter!("tern_messages_stored_total", "Messages durably stored");
        metrics::describe_counter!(
            "tern_deliveries_total",
            "Frames queued to connections by fan-out (messages, receipts, events)"
        );
        metrics::describe_counter!("tern_acks_total", "Acks received");
        metrics::describe_counter!(
            "tern_redeliveries_total",
            "Pushes repeated after the ack timeout"
        );
        metrics::describe_counter!(
            "tern_lagging_connections_total",
            "Times a connection turned lagging (pushes unacknowledged for limits.lagging_after_ms): its writes then go on a timer"
        );
        metrics::describe_counter!(
            "tern_rate_limited_total",
            "Frames refused by the per-connection rate limit"
        );
        metrics::describe_counter!(
            "tern_slow_reader_closes_total",
            "Connections closed because their queue was full"
        );
        // 5.6
        metrics::describe_gauge!(
            "tern_jobs_pending",
            "Durable jobs stored, by kind (webhook: events not yet delivered; push: offline pushes not yet sent)"
        );
        // 5.5
        metrics::describe_counter!(
            "tern_push_total",
            "Offline pushes by result (sent; failed and retried; gone: registration removed; refused: dropped; online, muted: not sent)"
        );
        metrics::describe_counter!(
            "tern_jobs_total",
            "Durable job runs by kind and result (ok, failed and retried, given_up)"
        );
        metrics::describe_counter!(
            "tern_webhook_deliveries_total",
            "Webhook POSTs by result (ok: a 2xx answer, failed)"
        );
        metrics::describe_counter!(
            "tern_before_send_total",
            "Before-send hook calls by result (answered, timeout, error, bad_answer, busy)"
        );
        metrics::describe_histogram!(
            "tern_storage_seconds",
            metrics::Unit::Seconds,
            "Storage latency by operation"
        );
        for name in [
            "tern_messages_stored_total",
            "tern_deliveries_total",
            "tern_acks_total",
            "tern_slow_reader_closes_total",
        ] {
            metrics::counter!(name).increment(0);
        }
    }
}

impl Default for Hot {
    fn default() -> Self {
        Hot::new()
    }
}
