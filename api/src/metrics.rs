//! Prometheus metrics of a node (a first set; `docs/metrics.md` lists them).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// The node's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template and status.
    pub requests: IntCounterVec,
    /// HTTP latency by route template.
    pub latency: HistogramVec,
    /// Accepted uploads.
    pub uploads: IntCounter,
    /// Download chunks served.
    pub downloads: IntCounter,
    /// Payload bytes received.
    pub bytes_in: IntCounter,
    /// Payload bytes sent.
    pub bytes_out: IntCounter,
    /// Changes received.
    pub changes_in: IntCounter,
    /// Changes sent.
    pub changes_out: IntCounter,
    /// Requests refused by the per-credential rate limit.
    pub rate_limited: IntCounter,
    /// Failed usage flushes (counters kept for the next flush).
    pub usage_flush_errors: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("cloudsync_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let latency = HistogramVec::new(
            HistogramOpts::new("cloudsync_http_request_duration_seconds", "HTTP request latency by route")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0]),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
        };
        let m = Metrics {
            requests,
            latency,
            uploads: counter("cloudsync_uploads_total", "Uploads accepted"),
            downloads: counter("cloudsync_download_chunks_total", "Download chunks served"),
            bytes_in: counter("cloudsync_payload_bytes_in_total", "Payload bytes received"),
            bytes_out: counter("cloudsync_payload_bytes_out_total", "Payload bytes sent"),
            changes_in: counter("cloudsync_changes_in_total", "Changes received"),
            changes_out: counter("cloudsync_changes_out_total", "Changes sent"),
            rate_limited: counter("cloudsync_rate_limited_total", "Requests refused by the per-credential rate limit"),
            usage_flush_errors: counter(
                "cloudsync_usage_flush_errors_total",
                "Failed usage flushes (their counters are kept for the next one)",
            ),
            registry,
        };
        for c in [
            &m.uploads,
            &m.downloads,
            &m.bytes_in,
            &m.bytes_out,
            &m.changes_in,
            &m.changes_out,
            &m.rate_limited,
            &m.usage_flush_errors,
        ] {
            let _ = m.registry.register(Box::new(c.clone()));
        }
        let _ = m.registry.register(Box::new(m.requests.clone()));
        let _ = m.registry.register(Box::new(m.latency.clone()));
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
