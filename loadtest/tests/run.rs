//! The load generator against an embedded switch: both loop modes complete
//! flows of every kind in the mix and verify clean; the mix is validated.

use std::time::Duration;

use loadtest::{Embedded, Flow, Mode, Options, parse_mix, run};

#[test]
fn mixes_parse_and_bad_ones_are_refused() {
    assert_eq!(
        parse_mix("cash_in=40,cash_out=20").unwrap(),
        vec![(Flow::CashIn, 40), (Flow::CashOut, 20)]
    );
    assert_eq!(
        parse_mix("cash_in=1,cash_out=0").unwrap(),
        vec![(Flow::CashIn, 1)]
    );
    for bad in [
        "",
        "cash_in",
        "cash_in=x",
        "teleport=1",
        "cash_in=0",
        "gas=20",
    ] {
        assert!(parse_mix(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_loops_complete_real_flows_and_verify_clean() {
    for mode in [
        Mode::Closed { concurrency: 8 },
        Mode::Open {
            rate: 100,
            in_flight_max: 100,
        },
    ] {
        let (embedded, target) = Embedded::start(|_| {}).await.unwrap();
        let record = tempfile::NamedTempFile::new().unwrap();
        let options = Options {
            mode: mode.clone(),
            mix: parse_mix(loadtest::DEFAULT_MIX).unwrap(),
            duration: Duration::from_millis(1500),
            warmup: Duration::ZERO,
            seed: 7,
            record: Some(record.path().to_path_buf()),
            progress: false,
            connections: 2,
        };
        // A hang must fail the test, not stall CI.
        let report = tokio::time::timeout(Duration::from_secs(120), run(target, options))
            .await
            .expect("the load run ended within two minutes")
            .unwrap();
        embedded.stop().await;
        let v = &report["verification"];
        assert_eq!(v["ok"], true, "{mode:?}: {report}");
        let completed = report["completed"].as_u64().unwrap();
        assert!(completed > 0 && report["failed"] == 0, "{mode:?}: {report}");
        assert_eq!(v["acknowledged"].as_u64().unwrap(), completed);
        // The switch ran in this process: its work is in the CPU figure.
        let cpu = &report["cpu"];
        assert!(
            cpu["process_seconds"].as_f64().unwrap() > 0.0
                && cpu["per_flow_us"].as_f64().unwrap() > 0.0,
            "{mode:?}: {cpu}"
        );
        for flow in ["cash_in", "cash_out", "bill", "qr"] {
            assert!(
                report["flows"][flow]["completed"].as_u64().unwrap() > 0,
                "{mode:?}: no {flow} in {report}"
            );
        }
        let lines = std::fs::read_to_string(record.path())
            .unwrap()
            .lines()
            .count() as u64;
        assert_eq!(
            lines, completed,
            "every acknowledged transaction is recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_null_server_answers_every_flow_and_verifies() {
    let (null, target) = loadtest::null::NullServer::start().await.unwrap();
    let options = Options {
        mode: Mode::Closed { concurrency: 8 },
        mix: parse_mix(loadtest::DEFAULT_MIX).unwrap(),
        duration: Duration::from_millis(800),
        warmup: Duration::ZERO,
        seed: 3,
        record: None,
        progress: false,
        connections: 2,
    };
    let report = tokio::time::timeout(Duration::from_secs(60), run(target, options))
        .await
        .expect("ends")
        .unwrap();
    null.stop().await;
    assert_eq!(report["verification"]["ok"], true, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    for flow in ["cash_in", "cash_out", "bill", "qr"] {
        assert!(
            report["flows"][flow]["completed"].as_u64().unwrap() > 0,
            "{flow}: {report}"
        );
    }
}

/// Verification against a switch that rate-limits each key waits for the
/// switch's retry hint instead of counting the refused lookups as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_waits_out_a_rate_limit() {
    let (embedded, target) = Embedded::start(|c| {
        c.rate_limit.requests_per_s = 20;
        c.rate_limit.burst = 5;
    })
    .await
    .unwrap();
    let options = Options {
        mode: Mode::Closed { concurrency: 8 },
        mix: parse_mix("cash_in=1").unwrap(),
        duration: Duration::from_millis(1500),
        warmup: Duration::ZERO,
        seed: 9,
        record: None,
        progress: false,
        connections: 2,
    };
    let report = tokio::time::timeout(Duration::from_secs(120), run(target, options))
        .await
        .expect("the load run ended within two minutes")
        .unwrap();
    embedded.stop().await;
    assert!(
        report["errors"]["rate_limited"].as_u64() > Some(0),
        "the limit was in force: {report}"
    );
    assert!(report["completed"].as_u64() > Some(0), "{report}");
    // Verified right after the load, every key's bucket empty.
    assert_eq!(report["verification"]["ok"], true, "{report}");
}
