//! Metrics: requests by method and status, latency per method, requests in
//! flight, ledger commits (events per record, fsync time). Names are
//! documented in README.md; the Prometheus exporter is installed by `main`.

use std::future::Future;
use std::time::Instant;

/// Time and count one gRPC call.
pub async fn observe<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let started = Instant::now();
    metrics::gauge!("switch_requests_in_flight").increment(1.0);
    let result = call.await;
    metrics::gauge!("switch_requests_in_flight").decrement(1.0);
    let code = match &result {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}", s.code()).to_lowercase(),
    };
    metrics::counter!("switch_requests_total", "method" => method, "code" => code).increment(1);
    metrics::histogram!("switch_request_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Ledger commits, from the ledger's writer thread.
pub struct LedgerMetrics;

impl ledger::Observer for LedgerMetrics {
    fn committed(&self, s: &ledger::RecordStats) {
        metrics::histogram!("ledger_record_events").record(s.events as f64);
        metrics::histogram!("ledger_fsync_seconds").record(s.fsync_ns as f64 / 1e9);
        metrics::counter!("ledger_records_total").increment(1);
        metrics::counter!("ledger_events_total").increment(s.events as u64);
    }
}
