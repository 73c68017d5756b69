//! Settlement windows end to end: net positions of random traffic sum to
//! zero and equal what the simulated banks saw; a window closed under load
//! holds every transfer exactly once; reports are stable and immutable;
//! banks read only their own; liquidity top-ups and sweeps. The ledger's
//! invariants are checked after every test.

use std::collections::{BTreeMap, HashSet};

use proto::v1 as pb;
use switch::accounts::{Kind, bank_number};
use tests::{Harness, error_code};
use tonic::Code;

const BANKS: [&str; 4] = ["970422", "970436", "970415", "970418"];
const TERMINALS: [&str; 4] = ["tho-tang-1", "tam-dao-1", "huong-dao-2", "vinh-yen-1"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every simulated customer's balance at every bank.
fn balances(h: &Harness) -> BTreeMap<(String, String), u64> {
    let mut accounts: Vec<(String, String)> = h
        .customers()
        .into_iter()
        .map(|c| (c.bank, c.account))
        .collect();
    accounts.extend(
        switch::demo::DEMO_MERCHANTS
            .iter()
            .map(|m| (m.4.to_string(), m.5.to_string())),
    );
    accounts
        .into_iter()
        .map(|(b, a)| {
            let balance = h.bank_balance(&b, &a);
            ((b, a), balance)
        })
        .collect()
}

/// A seeded mix of every kind of transaction; answers how many completed.
async fn traffic(h: &Harness, seed: u64, n: usize) -> usize {
    let mut rng = Rng(seed | 1);
    let customers = h.customers();
    let mut completed = 0;
    for i in 0..n {
        let bank = BANKS[rng.below(4) as usize];
        let c = customers
            .iter()
            .filter(|c| c.bank == bank)
            .nth(rng.below(5) as usize)
            .unwrap()
            .clone();
        let mut t = h.teller(TERMINALS[rng.below(4) as usize]);
        let amount = 50_000 + 10_000 * rng.below(50);
        let id = format!("s{seed}-{i}");
        let ok = match rng.below(5) {
            0 => t.cash_in(&id, bank, &c.account, amount).await.is_ok(),
            1 => {
                let code = h.withdrawal_code(bank, &c.account, amount);
                match t.cash_out_start(&id, bank, &c.account, &code, amount).await {
                    Ok(tx) if rng.below(4) == 0 => {
                        t.cash_out_cancel(&tx.transaction_id).await.unwrap();
                        false
                    }
                    Ok(tx) => t.cash_out_confirm(&tx.transaction_id).await.is_ok(),
                    Err(_) => false,
                }
            }
            2 | 3 => {
                let merchant = ["tap-hoa-tho-tang", "cafe-tam-dao", "nha-thuoc-huong-dao"]
                    [rng.below(3) as usize];
                let code = h
                    .merchant(merchant)
                    .create_qr(&id, amount, &format!("R{i}"), 0)
                    .await
                    .unwrap();
                h.bank(bank)
                    .pay_qr(&id, &code.payload, &c.account, 0)
                    .await
                    .is_ok()
            }
            _ => {
                let bc = h
                    .bill_customers()
                    .into_iter()
                    .filter(|b| b.bills_due > 0)
                    .nth(rng.below(16) as usize);
                match bc {
                    Some(bc) => {
                        let funding = if rng.below(2) == 0 {
                            (pb::Funding::Cash, None)
                        } else {
                            (pb::Funding::Account, Some((bank, c.account.as_str())))
                        };
                        t.pay_bills(&id, &bc.biller, &bc.customer, &[], funding.0, funding.1)
                            .await
                            .is_ok()
                    }
                    None => false,
                }
            }
        };
        completed += usize::from(ok);
    }
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_positions_sum_to_zero_and_match_what_the_banks_saw() {
    let h = Harness::start(|_| {}).await;
    let mut ops = h.settlement("operator");
    let windows = ops.windows().await;
    assert_eq!(windows.len(), 1);
    assert_eq!(
        (windows[0].window_id, windows[0].state.as_str()),
        (1, "open")
    );
    let before = balances(&h);
    let completed = traffic(&h, 7, 60).await;
    assert!(completed > 20, "enough traffic completed: {completed}");
    h.eventually(15, "reversals done", |h| {
        h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    let after = balances(&h);
    let w = ops.close().await;
    assert_eq!((w.window_id, w.state.as_str()), (1, "closed"));
    let report = ops.report(1, "").await.unwrap();
    let total: i64 = report.participants.iter().map(|p| p.net).sum();
    assert_eq!(total, 0, "net positions sum to zero");
    // Each bank's net is what its customers gained (credits the switch owes
    // it) less what they paid (debits it owes the switch).
    for bank in switch::demo::DEMO_BANKS {
        let moved: i64 = after
            .iter()
            .filter(|((b, _), _)| b == bank)
            .map(|(k, v)| *v as i64 - before[k] as i64)
            .sum();
        let line = report
            .participants
            .iter()
            .find(|p| p.participant == bank)
            .unwrap();
        assert_eq!(line.net, moved, "bank {bank}");
        assert_eq!(
            line.gross_credits as i64 - line.gross_debits as i64,
            line.net
        );
    }
    // Settlement reset every bank's and biller's position; the window's
    // account ends at zero.
    for bank in switch::demo::DEMO_BANKS {
        assert_eq!(
            h.ledger_balance(Kind::Bank.id(bank_number(bank))).await,
            0,
            "{bank}"
        );
    }
    for n in 1..=4 {
        assert_eq!(h.ledger_balance(Kind::Biller.id(n)).await, 0);
    }
    assert_eq!(h.ledger_balance(Kind::Window.id(1)).await, 0);
    assert!(
        report
            .csv
            .starts_with("participant,kind,count,gross_debits,gross_credits,fees,net\n")
    );
    assert_eq!(report.csv.lines().count(), report.participants.len() + 1);

    // The report is fixed: more traffic and the next window leave it as it was.
    traffic(&h, 11, 15).await;
    let second = ops.close().await;
    assert_eq!(second.window_id, 2);
    let again = ops.report(1, "").await.unwrap();
    assert_eq!(again, report);
    assert_eq!(
        ops.close_id(1).await.unwrap().report_sha256,
        w.report_sha256,
        "closing a closed window answers it"
    );
    let total: i64 = ops
        .report(2, "")
        .await
        .unwrap()
        .participants
        .iter()
        .map(|p| p.net)
        .sum();
    assert_eq!(total, 0);
    assert_eq!(ops.windows().await.last().unwrap().window_id, 3);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_closed_under_load_holds_every_transfer_exactly_once() {
    let h = std::sync::Arc::new(Harness::start(|_| {}).await);
    let mut load = tokio::task::JoinSet::new();
    for (k, terminal) in TERMINALS.iter().enumerate() {
        let h = h.clone();
        load.spawn(async move {
            let c = h.customer(BANKS[k], 0);
            let mut t = h.teller(terminal);
            let mut ids = Vec::new();
            for i in 0..40 {
                if let Ok(tx) = t
                    .cash_in(&format!("l{k}-{i}"), BANKS[k], &c.account, 20_000 + i)
                    .await
                {
                    ids.push(tx.transaction_id);
                }
            }
            ids
        });
    }
    {
        // And QR payments, whose principal passes through the clearing
        // account (a leg whose debit side belongs to no participant).
        let h = h.clone();
        load.spawn(async move {
            let payer = h.customer("970405", 1_000_000);
            let mut m = h.merchant("cafe-tam-dao");
            let mut ids = Vec::new();
            for i in 0..30 {
                let code = m
                    .create_qr(&format!("q{i}"), 10_000 + i, &format!("Q{i}"), 0)
                    .await
                    .unwrap();
                if let Ok(tx) = h
                    .bank("970405")
                    .pay_qr(&format!("q{i}"), &code.payload, &payer.account, 0)
                    .await
                {
                    ids.push(format!("qr:{}", tx.transaction_id));
                }
            }
            ids
        });
    }
    let mut ops = h.settlement("operator");
    let mut closed = Vec::new();
    while closed.len() < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        closed.push(ops.close().await);
    }
    let acked: Vec<String> = load.join_all().await.into_iter().flatten().collect();
    closed.push(ops.close().await);
    // Windows tile the ledger's time: each starts where the last ended.
    let mut seen = HashSet::new();
    let mut from = 0;
    let mut in_reports = 0;
    for w in &closed {
        let scan = h
            .switch
            .scan_window(from, w.cutoff_timestamp)
            .await
            .unwrap();
        for id in &scan.transfer_ids {
            assert!(seen.insert(*id), "transfer {id:x} is in two windows");
        }
        in_reports += ops
            .report(w.window_id, "")
            .await
            .unwrap()
            .participants
            .iter()
            .map(|p| p.gross_debits)
            .sum::<u64>();
        from = w.cutoff_timestamp;
    }
    let whole = h.switch.scan_window(0, from).await.unwrap();
    assert_eq!(
        seen,
        whole.transfer_ids.iter().copied().collect::<HashSet<_>>(),
        "none in no window"
    );
    let whole_debits: u64 = whole.positions.iter().map(|p| p.gross_debits).sum();
    assert_eq!(in_reports, whole_debits, "the reports add up to the whole");
    // Every acknowledged transaction's posted principal is in some window
    // (both halves of a QR payment's).
    for tx in &acked {
        let (legs, id): (&[u8], &str) = match tx.strip_prefix("qr:") {
            Some(id) => (&[1, 2], id),
            None => (&[1], tx),
        };
        for leg in legs {
            let post = switch::ids::TxId::parse(id).unwrap().leg(16 + leg);
            assert!(seen.contains(&post), "{tx} leg {leg} is in a window");
        }
    }
    assert!(acked.len() > 100, "{} acknowledged", acked.len());
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_reads_only_its_own_report_and_settling_is_recorded_once() {
    let h = Harness::start(|_| {}).await;
    traffic(&h, 3, 12).await;
    let mut ops = h.settlement("operator");
    let e = ops.report(1, "").await.unwrap_err();
    assert_eq!(error_code(&e), "window_open");
    ops.close().await;
    let mut mb = h.settlement("bank-970422");
    let own = mb.report(1, "").await.unwrap();
    assert_eq!(own.participants.len(), 1);
    assert_eq!(own.participants[0].participant, "970422");
    assert_eq!(own.sha256, ops.report(1, "").await.unwrap().sha256);
    let e = mb.report(1, "970436").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = h.settlement("tho-tang-1").report(1, "").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = mb.close_id(2).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "banks do not close windows"
    );

    let settled = ops.settle(1, "NAPAS-20261127-01").await.unwrap();
    assert_eq!(settled.state, "settled");
    assert_eq!(
        ops.settle(1, "NAPAS-20261127-01").await.unwrap(),
        settled,
        "idempotent"
    );
    let e = ops.settle(1, "OTHER").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = ops.settle(2, "X").await.unwrap_err();
    assert_eq!(error_code(&e), "window_open");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_ups_and_sweeps_move_liquidity_and_low_float_shows() {
    let h = Harness::start(|c| c.low_float_threshold = 600_000_000).await;
    let mut ops = h.settlement("operator");
    let get = async |s: &mut tests::Settlement, po: &str| {
        s.client
            .get_liquidity(s.credentials.sign(
                "/paymentswitch.v1.Settlement/GetLiquidity",
                pb::GetLiquidityRequest {
                    post_office_id: po.into(),
                },
            ))
            .await
            .map(|r| r.into_inner().post_offices)
    };
    let l = get(&mut ops, "tho-tang").await.unwrap().remove(0);
    assert_eq!((l.efloat, l.low_float), (500_000_000, true));
    assert_eq!(l.drawers.len(), 2);
    let top = pb::TopUpFloatRequest {
        client_request_id: "t-1".into(),
        post_office_id: "tho-tang".into(),
        amount: 150_000_000,
    };
    for _ in 0..2 {
        let l = ops
            .client
            .top_up_float(
                ops.credentials
                    .sign("/paymentswitch.v1.Settlement/TopUpFloat", top.clone()),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (l.efloat, l.low_float),
            (650_000_000, false),
            "a retry tops up once"
        );
    }
    let sweep = |amount| pb::SweepCashRequest {
        client_request_id: format!("s-{amount}"),
        terminal_id: "tho-tang-1".into(),
        amount,
    };
    let l = ops
        .client
        .sweep_cash(
            ops.credentials
                .sign("/paymentswitch.v1.Settlement/SweepCash", sweep(5_000_000)),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.efloat, 655_000_000);
    assert_eq!(
        l.drawers
            .iter()
            .find(|d| d.terminal_id == "tho-tang-1")
            .unwrap()
            .cash,
        15_000_000
    );
    let e = ops
        .client
        .sweep_cash(
            ops.credentials
                .sign("/paymentswitch.v1.Settlement/SweepCash", sweep(50_000_000)),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "insufficient_cash");
    // A teller sees its own post office only.
    let mut teller = h.settlement("tho-tang-1");
    assert_eq!(get(&mut teller, "").await.unwrap().len(), 1);
    assert_eq!(
        get(&mut teller, "tam-dao").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Liquidity is not a trade: the window's positions do not show it.
    ops.close().await;
    let report = ops.report(1, "").await.unwrap();
    assert!(
        report
            .participants
            .iter()
            .all(|p| p.net == 0 && p.count == 0)
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_on_their_schedule() {
    let h = Harness::start(|c| c.settlement.interval_ms = Some(300)).await;
    let c = h.customer("970422", 0);
    h.teller("tho-tang-1")
        .cash_in("sched-1", "970422", &c.account, 100_000)
        .await
        .unwrap();
    let mut ops = h.settlement("operator");
    let mut windows = ops.windows().await;
    for _ in 0..100 {
        if windows.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        windows = ops.windows().await;
    }
    assert!(windows.len() >= 3, "closed by the schedule: {windows:?}");
    assert!(
        windows[..windows.len() - 1]
            .iter()
            .all(|w| w.state == "closed")
    );
    let first = ops.report(1, "970422").await.unwrap();
    assert_eq!(
        first.participants[0].net, 100_000,
        "the cash-in is in window 1"
    );
    h.assert_ledger_clean().await;
}
