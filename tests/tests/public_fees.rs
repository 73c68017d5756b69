//! Public-service fees at a commune's one-stop desk (issue #30), over
//! gRPC: an operator sets the desk's catalogue; the desk asks for a
//! dossier's three items; a citizen's bank pays the code; the desk hears
//! of it live and reads the request back as paid; a second payment and an
//! expired request are refused; the window's report shows the collector's
//! takings and the month's report counts them as the commune's public
//! fees. Runs on both backends.

use std::time::Duration;

use proto::v1 as pb;
use tests::{Harness, error_code};

const DESK: &str = "mot-cua-tho-tang";
const VCB: &str = "970436";
const BIDV: &str = "970418";

fn item(code: &str, name: &str, price: u64, unit: &str) -> pb::FeeItem {
    pb::FeeItem {
        code: code.into(),
        name: name.into(),
        unit_price: price,
        unit: unit.into(),
        legal_basis: "Thông tư 226/2016/TT-BTC".into(),
    }
}

async fn create(
    h: &Harness,
    request_id: &str,
    dossier: &str,
    lines: &[(&str, u32)],
    expires_in_s: u32,
) -> Result<pb::FeeRequest, tonic::Status> {
    let mut m = h.merchant(DESK);
    let r = pb::CreateFeeRequestRequest {
        client_request_id: request_id.into(),
        dossier_code: dossier.into(),
        lines: lines
            .iter()
            .map(|(code, quantity)| pb::FeeLineRequest {
                code: code.to_string(),
                quantity: *quantity,
            })
            .collect(),
        expires_in_s,
    };
    m.client
        .create_fee_request(
            m.credentials
                .sign("/paymentswitch.v1.Merchant/CreateFeeRequest", r),
        )
        .await
        .map(|r| r.into_inner())
}

async fn get(h: &Harness, qr_id: &str) -> pb::FeeRequest {
    let mut m = h.merchant(DESK);
    m.client
        .get_fee_request(m.credentials.sign(
            "/paymentswitch.v1.Merchant/GetFeeRequest",
            pb::GetFeeRequestRequest {
                qr_id: qr_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossiers_fees_are_paid_by_qr_once_and_reconciled() {
    let h = Harness::start(|_| {}).await;
    // The operator sets the desk's catalogue.
    let catalogue = h
        .admin()
        .set_fee_catalogue(h.credentials("operator").sign(
            "/paymentswitch.v1.Admin/SetFeeCatalogue",
            pb::SetFeeCatalogueRequest {
                collector_id: DESK.into(),
                items: vec![
                    item("CT-BS", "Chứng thực bản sao từ bản chính", 2_000, "trang"),
                    item("TRICH-LUC", "Cấp bản sao trích lục hộ tịch", 8_000, "bản"),
                    item("CT-CK", "Chứng thực chữ ký", 10_000, "trường hợp"),
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (catalogue.items.len(), catalogue.commune.as_str()),
        (3, "tho-tang")
    );
    // Not a collector: refused.
    let e = h
        .admin()
        .set_fee_catalogue(h.credentials("operator").sign(
            "/paymentswitch.v1.Admin/SetFeeCatalogue",
            pb::SetFeeCatalogueRequest {
                collector_id: "tap-hoa-tho-tang".into(),
                items: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "invalid_argument");

    // The desk asks for three items.
    let request = create(
        &h,
        "ho-so-1",
        "H62.26-1207-0001",
        &[("CT-BS", 10), ("TRICH-LUC", 2), ("CT-CK", 1)],
        0,
    )
    .await
    .unwrap();
    assert_eq!(request.total, 10 * 2_000 + 2 * 8_000 + 10_000);
    assert_eq!(request.lines.len(), 3);
    assert_eq!(request.commune_name, "Thị trấn Thổ Tang");
    let qr = request.qr.clone().unwrap();
    let decoded = qr::decode(&qr.payload).unwrap();
    assert_eq!(
        (decoded.bin, decoded.amount_vnd()),
        (BIDV, Some(request.total))
    );
    assert_eq!(
        decoded.bill_number,
        Some("H62.26-1207-0001"),
        "the dossier code is the reference"
    );
    // A retry is the same request; other items under the same id are not.
    assert_eq!(
        create(
            &h,
            "ho-so-1",
            "H62.26-1207-0001",
            &[("CT-BS", 10), ("TRICH-LUC", 2), ("CT-CK", 1)],
            0
        )
        .await
        .unwrap()
        .qr,
        request.qr
    );
    let unknown = create(&h, "ho-so-x", "H62-X", &[("NOPE", 1)], 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&unknown), "unknown_fee_item");

    // A citizen pays from their bank app; the desk hears of it live.
    let mut watch = h.merchant(DESK).watch(0).await;
    let citizen = h.customer(VCB, 1_000_000);
    let budget_before = h.bank_balance(BIDV, "7100000001");
    let tx = h
        .bank(VCB)
        .pay_qr("citizen-1", &qr.payload, &citizen.account, 0)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    let notice = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a notice in time")
        .unwrap()
        .unwrap();
    assert_eq!(
        (notice.transaction_id.as_str(), notice.qr_id.as_str()),
        (tx.transaction_id.as_str(), qr.qr_id.as_str())
    );
    let paid = get(&h, &qr.qr_id).await;
    assert_eq!(paid.transaction_id, tx.transaction_id);
    assert!(paid.paid_at_ms > 0);
    assert_eq!(
        h.bank_balance(BIDV, "7100000001") - budget_before,
        request.total - tx.fee
    );

    // A second payment of the same request is refused.
    let again = h
        .bank(VCB)
        .pay_qr("citizen-2", &qr.payload, &citizen.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&again), "qr_already_paid");
    // A request not paid in time is refused.
    let short = create(&h, "ho-so-2", "H62.26-1207-0002", &[("CT-BS", 1)], 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let late = h
        .bank(VCB)
        .pay_qr("citizen-3", &short.qr.unwrap().payload, &citizen.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&late), "qr_expired");

    // The window's report shows the collector's takings, within BIDV's.
    let mut ops = h.settlement("operator");
    let w = ops.close().await;
    let report = ops.report(w.window_id, "").await.unwrap();
    let c = report
        .collectors
        .iter()
        .find(|c| c.collector_id == DESK)
        .expect("the collector's line");
    assert_eq!(
        (c.bank_bin.as_str(), c.count, c.gross),
        (BIDV, 1, request.total)
    );
    assert_eq!(c.net, request.total - tx.fee);
    let bidv = report
        .participants
        .iter()
        .find(|p| p.participant == BIDV)
        .unwrap();
    assert!(bidv.gross_credits >= c.net);
    // A bank sees its own collectors only.
    assert!(
        h.settlement(&format!("bank-{VCB}"))
            .report(w.window_id, "")
            .await
            .unwrap()
            .collectors
            .is_empty()
    );

    // The month's report counts the commune's public fees.
    let month = switch::civil::month_label(switch::civil::month_number(switch::clock::now_ms()));
    let r = ops.pilot_report(&month, "tho-tang").await.unwrap();
    let commune = r
        .units
        .iter()
        .find(|u| u.level == "commune" && u.id == "tho-tang")
        .unwrap();
    let fees = commune
        .products
        .iter()
        .find(|p| p.product == "public_fees")
        .expect("public fees");
    assert_eq!((fees.count, fees.value), (1, request.total));
    assert!(commune.products.iter().all(|p| p.product != "merchant_qr"));
    // The desk is not a merchant the plan counts.
    assert_eq!(commune.active_merchants, 0);
    h.assert_ledger_clean().await;
}
