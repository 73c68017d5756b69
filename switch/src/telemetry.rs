//! Metrics: requests by method and status, latency per method, requests in
//! flight, stages a request waits on (`switch_stage_seconds`), ledger
//! commits (events per record, fsync time). The Grafana dashboard in `ops/`
//! charts them; the Prometheus exporter is installed by `main`.

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
    recent().record(
        crate::clock::monotonic_ms(),
        result.is_ok(),
        started.elapsed().as_micros() as u64,
    );
    result
}

/// Time one stage of a flow (`switch_stage_seconds{stage}`): where a slow
/// request waited, beside the per-method totals.
pub async fn stage<T>(stage: &'static str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    metrics::histogram!("switch_stage_seconds", "stage" => stage).record(started.elapsed());
    out
}

/// The last few minutes of calls, in 10-second buckets, for the console's
/// live charts (Prometheus keeps the history; this keeps what a page needs
/// without asking it).
pub struct Recent {
    buckets: std::collections::VecDeque<Bucket>,
}

/// One 10-second bucket.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    /// Its start, on the switch's monotonic clock.
    pub start_ms: i64,
    pub ok: u64,
    pub failed: u64,
    /// Up to `LATENCIES_MAX` call durations (the first ones of the bucket).
    latencies_us: Vec<u64>,
}

impl Bucket {
    /// Calls a second over the bucket.
    pub fn per_s(&self) -> f64 {
        (self.ok + self.failed) as f64 / (BUCKET_MS as f64 / 1000.0)
    }
    /// The 99th percentile of the sampled durations, in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        let mut l = self.latencies_us.clone();
        if l.is_empty() {
            return 0.0;
        }
        l.sort_unstable();
        l[(l.len() * 99 / 100).min(l.len() - 1)] as f64 / 1000.0
    }
}

const BUCKET_MS: i64 = 10_000;
/// Five minutes.
const BUCKETS_MAX: usize = 30;
const LATENCIES_MAX: usize = 2_000;

impl Recent {
    fn record(&mut self, now_ms: i64, ok: bool, latency_us: u64) {
        let start_ms = now_ms - now_ms.rem_euclid(BUCKET_MS);
        if self.buckets.back().is_none_or(|b| b.start_ms != start_ms) {
            self.buckets.push_back(Bucket {
                start_ms,
                ..Bucket::default()
            });
            while self.buckets.len() > BUCKETS_MAX {
                self.buckets.pop_front();
            }
        }
        let b = self.buckets.back_mut().expect("pushed above");
        if ok {
            b.ok += 1;
        } else {
            b.failed += 1;
        }
        if b.latencies_us.len() < LATENCIES_MAX {
            b.latencies_us.push(latency_us);
        }
    }

    /// The last five minutes up to `now_ms`, oldest first, one bucket per
    /// ten seconds (a quiet one empty), so that a chart has its time axis.
    pub fn series(&self, now_ms: i64) -> Vec<Bucket> {
        let last = now_ms - now_ms.rem_euclid(BUCKET_MS);
        (0..BUCKETS_MAX as i64)
            .rev()
            .map(|k| last - k * BUCKET_MS)
            .map(|start_ms| {
                self.buckets
                    .iter()
                    .find(|b| b.start_ms == start_ms)
                    .cloned()
                    .unwrap_or(Bucket {
                        start_ms,
                        ..Bucket::default()
                    })
            })
            .collect()
    }
}

/// The process's recent calls.
pub fn recent() -> std::sync::MutexGuard<'static, Recent> {
    static RECENT: std::sync::Mutex<Recent> = std::sync::Mutex::new(Recent {
        buckets: std::collections::VecDeque::new(),
    });
    RECENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ledger commits, from the ledger's writer thread.
pub struct LedgerMetrics;

impl ledger::Observer for LedgerMetrics {
    fn committed(&self, s: &ledger::RecordStats) {
        metrics::histogram!("ledger_record_events").record(s.events as f64);
        metrics::histogram!("ledger_fsync_seconds").record(s.fsync_ns as f64 / 1e9);
        // Applying and appending the record, before its fsync: the time the
        // writer holds every queued request for reasons other than the disk.
        metrics::histogram!("ledger_apply_seconds").record(s.apply_ns as f64 / 1e9);
        metrics::counter!("ledger_records_total").increment(1);
        metrics::counter!("ledger_events_total").increment(s.events as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_calls_are_bucketed_by_ten_seconds_with_quiet_ones_filled_in() {
        let mut r = Recent {
            buckets: std::collections::VecDeque::new(),
        };
        for i in 0..100 {
            r.record(1_000_000 + i, i % 10 != 0, 1_000 * (i as u64 + 1));
        }
        r.record(1_030_000, true, 5_000);
        let s = r.series(1_035_000);
        assert_eq!(s.len(), BUCKETS_MAX);
        let last = &s[BUCKETS_MAX - 1];
        assert_eq!((last.start_ms, last.ok, last.failed), (1_030_000, 1, 0));
        let first_calls = &s[BUCKETS_MAX - 4];
        assert_eq!((first_calls.ok, first_calls.failed), (90, 10));
        assert_eq!(first_calls.per_s(), 10.0);
        assert_eq!(first_calls.p99_ms(), 100.0);
        assert_eq!(
            s[BUCKETS_MAX - 2].ok + s[BUCKETS_MAX - 2].failed,
            0,
            "a quiet step"
        );
        // Older than five minutes: gone.
        r.record(2_000_000, true, 1);
        assert!(r.series(2_000_000).iter().all(|b| b.start_ms > 1_700_000));
    }
}
