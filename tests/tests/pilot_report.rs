//! The pilot report (issue #28) end to end: transactions made over gRPC at
//! the demo's counters and merchants, then the month's report per commune,
//! post office, merchant and province, as an operator and as a bank sees
//! it, equal to what was done; the aggregates equal a rebuild from the
//! records; and they outlive a restart. Both backends (SWITCH_TEST_STORE).

use proto::v1 as pb;
use tests::{Harness, error_code};

const MB: &str = "970422";
const VCB: &str = "970436";

fn unit<'a>(r: &'a pb::PilotReport, level: &str, id: &str) -> &'a pb::PilotUnit {
    r.units
        .iter()
        .find(|u| u.level == level && u.id == id)
        .unwrap_or_else(|| {
            panic!(
                "no {level} {id} in {:?}",
                r.units
                    .iter()
                    .map(|u| (&u.level, &u.id))
                    .collect::<Vec<_>>()
            )
        })
}

fn product<'a>(u: &'a pb::PilotUnit, name: &str) -> Option<&'a pb::PilotProduct> {
    u.products.iter().find(|p| p.product == name)
}

/// This month in Vietnam, as the report names it.
fn this_month() -> String {
    switch::civil::month_label(switch::civil::month_number(switch::clock::now_ms()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_months_report_counts_what_each_commune_did() {
    let h = Harness::start(|_| {}).await;
    let mb = h.customer(MB, 2_000_000);
    let vcb = h.customer(VCB, 2_000_000);
    // Thổ Tang: a cash-in, a cash-out, a top-up in cash.
    let mut tho_tang = h.teller("tho-tang-1");
    tho_tang
        .cash_in("r1", MB, &mb.account, 500_000)
        .await
        .unwrap();
    let code = h.withdrawal_code(MB, &mb.account, 200_000);
    let out = tho_tang
        .cash_out_start("r2", MB, &mb.account, &code, 200_000)
        .await
        .unwrap();
    tho_tang
        .cash_out_confirm(&out.transaction_id)
        .await
        .unwrap();
    tho_tang
        .top_up(
            "r3",
            "VIETTEL",
            "0981234567",
            50_000,
            pb::Funding::Cash,
            None,
        )
        .await
        .unwrap();
    // Hướng Đạo: an electricity bill in cash. Tam Đảo: water from an account.
    let evn = h.bill_customer("EVN", 1);
    h.teller("huong-dao-1")
        .pay_bills("r4", "EVN", &evn.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    let water = h.bill_customer("NUOCVP", 1);
    h.teller("tam-dao-1")
        .pay_bills(
            "r5",
            "NUOCVP",
            &water.customer,
            &[],
            pb::Funding::Account,
            Some((VCB, &vcb.account)),
        )
        .await
        .unwrap();
    // A merchant of Thổ Tang paid by a VCB customer.
    let qr = h
        .merchant("tap-hoa-tho-tang")
        .create_qr("o1", 65_000, "HD-1", 0)
        .await
        .unwrap();
    h.bank(VCB)
        .pay_qr("p1", &qr.payload, &vcb.account, 0)
        .await
        .unwrap();
    // A cash-in the bank does not know: failed.
    let e = tho_tang
        .cash_in("r6", MB, "99999999999", 100_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");

    let month = this_month();
    let r = h
        .settlement("operator")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(r.period, month);
    assert!(r.bank_bin.is_empty());
    let province = unit(&r, "province", "");
    assert_eq!(province.name, "Toàn tỉnh");
    let tt = unit(&r, "commune", "tho-tang");
    assert_eq!(tt.name, "Thị trấn Thổ Tang");
    assert!(tt.pilot);
    let cash_in = product(tt, "cash_in").unwrap();
    assert_eq!(
        (cash_in.count, cash_in.value, cash_in.failed),
        (1, 500_000, 1)
    );
    let cash_out = product(tt, "cash_out").unwrap();
    assert_eq!((cash_out.count, cash_out.value), (1, 200_000));
    assert_eq!(product(tt, "top_up").unwrap().value, 50_000);
    assert_eq!(product(tt, "merchant_qr").unwrap().value, 65_000);
    // MB's customer at the counter, VCB's paying the merchant.
    assert_eq!(tt.distinct_customers, 2);
    assert_eq!((tt.active_terminals, tt.active_merchants), (1, 1));
    // The post office's line has its own products; the merchant's its QR.
    let po = unit(&r, "post_office", "tho-tang");
    assert_eq!(po.name, "Bưu điện Thổ Tang");
    assert!(product(po, "merchant_qr").is_none());
    assert_eq!(product(po, "cash_in").unwrap().count, 1);
    let shop = unit(&r, "merchant", "tap-hoa-tho-tang");
    assert_eq!(product(shop, "merchant_qr").unwrap().count, 1);
    // Bills by category, and the cashless share.
    let hd = unit(&r, "commune", "huong-dao");
    assert_eq!(product(hd, "bill_electricity").unwrap().count, 1);
    assert_eq!((hd.bills, hd.bills_cashless), (1, 0));
    let td = unit(&r, "commune", "tam-dao");
    assert_eq!(product(td, "bill_water").unwrap().count, 1);
    assert_eq!((td.bills, td.bills_cashless), (1, 1));
    // Every pilot commune has a line, a quiet one too.
    let lc = unit(&r, "commune", "lang-cong");
    assert!(lc.products.is_empty() && lc.pilot);
    // The province is the sum of its communes, product by product.
    for p in &province.products {
        let sum: u64 = r
            .units
            .iter()
            .filter(|u| u.level == "commune")
            .filter_map(|u| product(u, &p.product))
            .map(|x| x.value)
            .sum();
        assert_eq!(sum, p.value, "{}", p.product);
    }
    let total: u64 = province.products.iter().map(|p| p.count).sum();
    assert_eq!(total, 6, "six completed");
    // The demo's merchants were provisioned this month.
    assert_eq!(province.new_merchants, 3);
    assert_eq!(province.distinct_customers, 2);

    // A bank's staff see only their customers' transactions.
    let seen_by_mb = h
        .settlement("bank-970422")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(seen_by_mb.bank_bin, MB);
    let mbp = unit(&seen_by_mb, "province", "");
    assert!(product(mbp, "merchant_qr").is_none(), "VCB's payment");
    assert!(product(mbp, "bill_water").is_none(), "VCB's account");
    assert_eq!(product(mbp, "cash_in").unwrap().value, 500_000);
    // One commune only.
    let only = h
        .settlement("operator")
        .pilot_report(&month, "huong-dao")
        .await
        .unwrap();
    assert!(
        only.units
            .iter()
            .all(|u| u.level == "province" || u.commune == "huong-dao")
    );
    assert_eq!(
        unit(&only, "province", "")
            .products
            .iter()
            .map(|p| p.count)
            .sum::<u64>(),
        1
    );
    // Bad periods and communes are refused with the reason.
    for (period, commune) in [
        ("2026-13", ""),
        ("November", ""),
        (month.as_str(), "atlantis"),
    ] {
        let e = h
            .settlement("operator")
            .pilot_report(period, commune)
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "invalid_argument", "{period} {commune}");
    }
    let e = h
        .settlement("tap-hoa-tho-tang")
        .pilot_report(&month, "")
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "permission_denied");

    // The kept aggregates are what a rebuild from the records gives.
    let check = h.settlement("operator").check_pilot_report(false).await;
    assert!(check.differing.is_empty(), "{:?}", check.differing);
    // And they are durable: the same report after a restart.
    let h = h.restart(|_| {}).await;
    let again = h
        .settlement("operator")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(again.units, r.units);
    h.assert_ledger_clean().await;
}

/// A store from before the aggregates (its transactions finished, no
/// aggregate kept): the first start makes them from the records, so the
/// report counts that history too, and the check is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_the_aggregates_is_counted_from_its_records() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    h.teller("tho-tang-1")
        .cash_in("before", MB, &c.account, 300_000)
        .await
        .unwrap();
    let month = this_month();
    let counted = |r: &pb::PilotReport| {
        product(unit(r, "commune", "tho-tang"), "cash_in").map(|p| (p.count, p.value))
    };
    let r = h
        .settlement("operator")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(counted(&r), Some((1, 300_000)));
    // As an earlier version left it.
    h.switch.store.reset_stats().unwrap();
    h.switch.store.durable().await.unwrap();
    let r = h
        .settlement("operator")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(counted(&r), None, "nothing kept");
    let h = h.restart(|_| {}).await;
    let r = h
        .settlement("operator")
        .pilot_report(&month, "")
        .await
        .unwrap();
    assert_eq!(
        counted(&r),
        Some((1, 300_000)),
        "made from the records at start"
    );
    let check = h.settlement("operator").check_pilot_report(false).await;
    assert!(check.differing.is_empty(), "{:?}", check.differing);
    h.assert_ledger_clean().await;
}
