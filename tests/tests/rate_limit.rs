//! Each caller's key has its share (#15): past its burst a terminal is
//! refused with RESOURCE_EXHAUSTED, code `rate_limited` and a retry-after
//! hint; another terminal meanwhile is served; after the hint the first is
//! served again.

use tests::{Harness, error_code};

const MB: &str = "970422";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_past_its_burst_waits_and_the_others_do_not() {
    let h = Harness::start(|c| {
        c.rate_limit.requests_per_s = 2;
        c.rate_limit.burst = 5;
    })
    .await;
    let c = h.customer(MB, 0);
    let mut busy = h.teller("tho-tang-1");
    let mut refused = None;
    // Five at once pass; the sixth (or soon after, as tokens trickle in at
    // two a second) is refused.
    for _ in 0..8 {
        if let Err(e) = busy.name_inquiry(MB, &c.account).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("refused past the burst");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(error_code(&e), "rate_limited");
    let retry_after_ms: u64 = e
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a retry-after-ms hint");
    assert!((1..=500).contains(&retry_after_ms), "{retry_after_ms}");

    let mut other = h.teller("tam-dao-1");
    other
        .name_inquiry(MB, &c.account)
        .await
        .expect("another terminal is served meanwhile");

    tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms)).await;
    busy.name_inquiry(MB, &c.account)
        .await
        .expect("served again after the hint");
}
