//! Reconciliation of bank statements end to end: crafted statements
//! covering every class and duplicate lines, a malformed line (a clear
//! error naming it, nothing kept), re-uploads answering the same report,
//! a statement whose bytes differ from what was signed, resolutions with
//! their audit trail, and a large statement streamed in small chunks.

use tests::{Harness, class_count, error_code};
use tonic::Code;

const MB: &str = "970422";

/// Traffic with MB: cash-ins, a cash-out, a cancelled cash-out (reversed)
/// and a QR payment from MB (a debit). Answers the statement MB would send
/// for the window: `transaction_id,amount,direction,status,posted_at`.
async fn traffic_and_true_statement(h: &Harness) -> Vec<String> {
    let c = h.customer(MB, 5_000_000);
    let mut t = h.teller("tho-tang-1");
    let mut lines = Vec::new();
    for (i, amount) in [100_000u64, 250_000, 1_000_000].into_iter().enumerate() {
        let tx = t
            .cash_in(&format!("in-{i}"), MB, &c.account, amount)
            .await
            .unwrap();
        lines.push(format!(
            "{},{amount},credit,completed,2026-11-27T10:0{i}",
            tx.transaction_id
        ));
    }
    let code = h.withdrawal_code(MB, &c.account, 300_000);
    let out = t
        .cash_out_start("out-1", MB, &c.account, &code, 300_000)
        .await
        .unwrap();
    t.cash_out_confirm(&out.transaction_id).await.unwrap();
    lines.push(format!(
        "{},{},debit,completed,x",
        out.transaction_id,
        300_000 + out.fee
    ));
    let code = h.withdrawal_code(MB, &c.account, 200_000);
    let back = t
        .cash_out_start("out-2", MB, &c.account, &code, 200_000)
        .await
        .unwrap();
    t.cash_out_cancel(&back.transaction_id).await.unwrap();
    lines.push(format!(
        "{},{},debit,reversed,x",
        back.transaction_id,
        200_000 + back.fee
    ));
    let qr = h
        .merchant("cafe-tam-dao")
        .create_qr("o-1", 75_000, "C-1", 0)
        .await
        .unwrap();
    let paid = h
        .bank(MB)
        .pay_qr("q-1", &qr.payload, &c.account, 0)
        .await
        .unwrap();
    lines.push(format!("{},75000,debit,completed,x", paid.transaction_id));
    lines
}

fn statement(lines: &[String]) -> Vec<u8> {
    let mut s = String::from("transaction_id,amount,direction,status,posted_at\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_true_statement_matches_and_a_crafted_one_shows_every_class() {
    let h = Harness::start(|_| {}).await;
    let mut mb = h.settlement(&format!("bank-{MB}"));
    let truth = traffic_and_true_statement(&h).await;
    // Not before the window closes.
    let e = mb
        .reconcile(1, &statement(&truth), 64, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "window_open");
    h.settlement("operator").close().await;

    let r = mb.reconcile(1, &statement(&truth), 64, None).await.unwrap();
    assert_eq!(class_count(&r, "matched"), truth.len() as u64, "{r:?}");
    assert_eq!(r.exceptions_total, 0);
    assert_eq!(r.lines, truth.len() as u64);

    // Drop one line, invent one, change an amount, flip a status, and list
    // one twice.
    let mut crafted = truth.clone();
    crafted.remove(0); // missing at the bank
    crafted.push(format!(
        "{:032x},5000,credit,completed,x",
        0xabcdef00u128 << 64
    )); // missing at the switch
    crafted[0] = crafted[0].replace(",250000,", ",250001,"); // amount
    crafted[1] = crafted[1].replace(",completed,", ",reversed,"); // status
    crafted.push(crafted[2].clone()); // duplicate
    let r = mb
        .reconcile(1, &statement(&crafted), 100, None)
        .await
        .unwrap();
    let counts: Vec<u64> = [
        "matched",
        "missing_at_bank",
        "missing_at_switch",
        "amount_mismatch",
        "status_mismatch",
        "duplicate",
    ]
    .iter()
    .map(|c| class_count(&r, c))
    .collect();
    assert_eq!(counts, [truth.len() as u64 - 3, 1, 1, 1, 1, 1], "{r:?}");
    assert_eq!(r.exceptions_total, 5);
    let missing = r
        .exceptions
        .iter()
        .find(|x| x.class == "missing_at_bank")
        .unwrap();
    assert_eq!(&missing.transaction_id, truth[0].split(',').next().unwrap());
    let amount = r
        .exceptions
        .iter()
        .find(|x| x.class == "amount_mismatch")
        .unwrap();
    assert_eq!(
        (amount.switch_amount, amount.bank_amount, amount.line),
        (250_000, 250_001, 2)
    );

    // The same statement again: the same report.
    let again = mb
        .reconcile(1, &statement(&crafted), 7, None)
        .await
        .unwrap();
    assert_eq!(again, r);

    // An operator resolves an exception; it is kept and audited.
    let mut ops = h.settlement("operator");
    let resolved = ops
        .resolve(
            1,
            MB,
            &amount.exception_id,
            "bank confirmed a typo in its statement",
        )
        .await
        .unwrap();
    assert_eq!(
        (
            resolved.resolved_by.as_str(),
            resolved.resolution_note.is_empty()
        ),
        ("operator", false)
    );
    let shown = mb
        .reconcile(1, &statement(&crafted), 50, None)
        .await
        .unwrap();
    let kept = shown
        .exceptions
        .iter()
        .find(|x| x.exception_id == amount.exception_id)
        .unwrap();
    assert_eq!(
        kept.resolution_note,
        "bank confirmed a typo in its statement"
    );
    let audit = h.switch.audit_trail().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["exception"], amount.exception_id.as_str());
    let e = mb
        .resolve(1, MB, &amount.exception_id, "mine")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "banks do not resolve");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_is_named_and_nothing_is_kept() {
    let h = Harness::start(|_| {}).await;
    let truth = traffic_and_true_statement(&h).await;
    h.settlement("operator").close().await;
    let mut mb = h.settlement(&format!("bank-{MB}"));
    // Lines that cannot be read, or that name an id the switch never
    // issues, are exceptions of their own, with their line numbers; the
    // rest of the statement still reconciles (issue #15).
    let mut odd = truth.clone();
    odd[3] = odd[3].replace(",debit,", ",sideways,");
    odd[1] = odd[1].replace(",250000,", ",25O000,");
    odd.push("00000000-0000-0000-0000-00000000beef,1000,credit,completed,x".into());
    let r = mb.reconcile(1, &statement(&odd), 32, None).await.unwrap();
    let found = |class: &str, line: u64, word: &str| {
        r.exceptions
            .iter()
            .any(|e| e.class == class && e.line == line && e.reason.contains(word))
    };
    assert!(found("unreadable", 5, "direction"), "{:?}", r.exceptions);
    assert!(found("unreadable", 3, "amount"), "{:?}", r.exceptions);
    let foreign = r
        .exceptions
        .iter()
        .find(|e| e.class == "missing_at_switch" && e.line == odd.len() as u64 + 1)
        .expect("a line with an id the switch never issues");
    assert_eq!(
        foreign.transaction_id,
        "00000000-0000-0000-0000-00000000beef"
    );
    assert_eq!(foreign.bank_amount, 1000);
    assert_eq!(class_count(&r, "unreadable"), 2);
    assert_eq!(class_count(&r, "matched"), truth.len() as u64 - 2);
    // A broken CSV structure still refuses the whole statement, and says
    // where.
    let mut broken = truth.clone();
    broken[0] = "only,three,fields".into();
    let e = mb
        .reconcile(1, &statement(&broken), 32, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "statement_invalid", "{e:?}");
    assert!(
        e.message().contains("line 2") && e.message().contains("CSV"),
        "{}",
        e.message()
    );
    let e = mb
        .reconcile(1, b"id,amount\n1,2\n", 32, None)
        .await
        .unwrap_err();
    assert!(
        e.message().contains("line 1") && e.message().contains("transaction_id"),
        "{}",
        e.message()
    );
    // Bytes other than the ones signed are refused.
    let good = statement(&truth);
    let e = mb
        .reconcile(
            1,
            &good,
            32,
            Some(&proto::auth::sha256_hex(b"something else")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // The signature names the window: a statement signed for window 1 is
    // refused for window 2, and so is one signed over the file alone.
    h.settlement("operator").close().await;
    let for_window_1 = proto::auth::StatementDigest::of(1, &good);
    let e = mb
        .reconcile(2, &good, 32, Some(&for_window_1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("window"), "{}", e.message());
    let e = mb
        .reconcile(1, &good, 32, Some(&proto::auth::sha256_hex(&good)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Nothing of the refused ones was kept: the valid statement reconciles
    // cleanly.
    let r = mb.reconcile(1, &good, 32, None).await.unwrap();
    assert_eq!(class_count(&r, "matched"), truth.len() as u64);
    assert!(h.switch.audit_trail().unwrap().is_empty());
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_statement_streams_through_in_small_chunks() {
    let h = Harness::start(|_| {}).await;
    let truth = traffic_and_true_statement(&h).await;
    h.settlement("operator").close().await;
    // The true lines, then many the switch never saw (a bank's statement
    // covering far more than this switch).
    let extra = 100_000u64;
    let mut text = statement(&truth);
    for i in 0..extra {
        text.extend_from_slice(
            format!(
                "{:032x},{},credit,completed,2026-11-27\n",
                (u128::from(i) + 1) << 8,
                1_000 + i
            )
            .as_bytes(),
        );
    }
    let mut mb = h.settlement(&format!("bank-{MB}"));
    let r = mb.reconcile(1, &text, 64 * 1024, None).await.unwrap();
    assert_eq!(r.lines, truth.len() as u64 + extra);
    assert_eq!(class_count(&r, "matched"), truth.len() as u64);
    assert_eq!(class_count(&r, "missing_at_switch"), extra);
    assert_eq!(r.exceptions_total, extra);
    assert_eq!(
        r.exceptions.len(),
        1000,
        "the report carries the first thousand"
    );
    h.assert_ledger_clean().await;
}

/// Issue #16, item 2: a biller's statement (submitted by an operator) is
/// reconciled with the same classes, and checked against the biller's
/// position in the window's settlement report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billers_statement_is_reconciled_and_checked_against_its_position() {
    use proto::v1 as pb;
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let customers: Vec<_> = h
        .bill_customers()
        .into_iter()
        .filter(|c| c.biller == "VNPT" && c.bills_due > 0)
        .take(3)
        .collect();
    let payer = h.customer(MB, 5_000_000);
    let mut truth = Vec::new();
    // Cash: the biller's call is the transaction's first (reference = id).
    for (i, c) in customers[..2].iter().enumerate() {
        let tx = t
            .pay_bills(
                &format!("b-{i}"),
                "VNPT",
                &c.customer,
                &[],
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap();
        truth.push(format!(
            "{},{},credit,completed,x",
            tx.transaction_id, c.amount_due
        ));
    }
    // Account funding: the biller's call is the second (`id | 1`).
    let c = &customers[2];
    let tx = t
        .pay_bills(
            "b-2",
            "VNPT",
            &c.customer,
            &[],
            pb::Funding::Account,
            Some((MB, &payer.account)),
        )
        .await
        .unwrap();
    let second = format!(
        "{}{:02x}",
        &tx.transaction_id[..30],
        u8::from_str_radix(&tx.transaction_id[30..], 16).unwrap() | 1
    );
    truth.push(format!("{second},{},credit,completed,x", c.amount_due));
    let paid: u64 = customers.iter().map(|c| c.amount_due).sum();
    let mut ops = h.settlement("operator");
    ops.close().await;

    let r = ops
        .reconcile_biller("VNPT", 1, &statement(&truth))
        .await
        .unwrap();
    assert_eq!(
        (
            class_count(&r, "matched"),
            r.exceptions_total,
            r.biller.as_str(),
            r.bank_bin.as_str()
        ),
        (3, 0, "VNPT", ""),
        "{r:?}"
    );
    assert!(r.position_checked);
    assert_eq!((r.report_net, r.statement_net), (paid as i64, paid as i64));

    // A line missing and one the switch never sent: both classes, and the
    // statement no longer adds up to the position.
    let mut crafted = truth.clone();
    crafted.remove(0);
    crafted.push(format!("{:032x},5000,credit,completed,x", 0xbeefu128 << 64));
    let r = ops
        .reconcile_biller("VNPT", 1, &statement(&crafted))
        .await
        .unwrap();
    assert_eq!(
        (
            class_count(&r, "matched"),
            class_count(&r, "missing_at_bank"),
            class_count(&r, "missing_at_switch")
        ),
        (2, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.report_net, paid as i64);
    assert_eq!(
        r.statement_net,
        (paid - customers[0].amount_due + 5_000) as i64
    );
    let missing = r
        .exceptions
        .iter()
        .find(|x| x.class == "missing_at_bank")
        .unwrap();
    let resolved = ops
        .resolve(
            1,
            "biller:VNPT",
            &missing.exception_id,
            "VNPT's file was cut short; resent",
        )
        .await
        .unwrap();
    assert_eq!(
        resolved.resolution_note,
        "VNPT's file was cut short; resent"
    );
    // Another biller's file holds none of these.
    let r = ops
        .reconcile_biller("EVN", 1, &statement(&truth))
        .await
        .unwrap();
    assert_eq!(class_count(&r, "missing_at_switch"), 3, "{r:?}");
    assert_eq!(r.report_net, 0);

    // Who may submit what.
    let e = h
        .settlement(&format!("bank-{MB}"))
        .reconcile_biller("VNPT", 1, &statement(&truth))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = ops
        .reconcile(1, &statement(&truth), 64, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = ops
        .reconcile_biller("NOPE", 1, &statement(&truth))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "unknown_biller");
    // The biller is under the signature: a bank's digest for the same
    // bytes does not pass for VNPT's statement.
    let bank_digest = proto::auth::StatementDigest::of(1, &statement(&truth));
    let e = ops
        .reconcile_for_test("VNPT", 1, &statement(&truth), &bank_digest)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}
