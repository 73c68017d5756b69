//! A commune one-stop desk (issue #30) in Chromium: the clerk enters a
//! dossier's code and three items, keyboard only; the kiosk view, in a
//! second browser facing the citizen, shows the QR, the items and the
//! total; the citizen's bank pays it and the kiosk turns to "Đã thanh
//! toán"; the fee receipt printed is decoded and is the request's.

use std::time::Duration;

use browser::*;
use fantoccini::key::Key;
use pos_agent::receipt::{self, escpos};
use proto::v1 as pb;
use tests::Harness;

mod browser;

const DESK: &str = "mot-cua-tho-tang";
const VCB: &str = "970436";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_turns_to_paid() {
    let h = Harness::start(|_| {}).await;
    let state = tempfile::tempdir().unwrap();
    let profile = pos_agent::client::Profile::load(
        &h.data_dir().join("profiles").join(format!("{DESK}.toml")),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = pos_agent::desk::Config {
        profile,
        state_dir: state.path().to_path_buf(),
        printer: None,
        paper: receipt::Paper::Mm80,
        expires_in_s: 0,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pos_agent::desk::run(listener, config, async {
        let _ = stopped.await;
    }));

    let d = driver();
    let clerk = browser(&d).await;
    let kiosk = browser(&d).await;
    kiosk.goto(&format!("{base}/kiosk")).await.unwrap();
    wait_for(&kiosk, "#kiosk-idle").await;

    clerk.goto(&format!("{base}/")).await.unwrap();
    typed(&clerk, "#dossier", "H62.26-1207-0042").await;
    typed(&clerk, "#q-CT-BS", "12").await;
    typed(&clerk, "#q-TRICH-LUC", "2").await;
    typed(&clerk, "#q-CT-CK", &format!("1{}", char::from(Key::Enter))).await;
    assert_eq!(wait_for(&clerk, "#total").await, "50.000 ₫");
    let payload = wait_for(&clerk, "#qr-payload").await;
    shot(&clerk, "desk-1-request").await;

    // The kiosk shows the code, the items and the total.
    wait_for(&kiosk, "#kiosk-qr svg").await;
    let shown = wait_for(&kiosk, "#kiosk").await;
    assert!(
        shown.contains("Chứng thực bản sao") && shown.contains("50.000 ₫"),
        "{shown}"
    );
    shot(&kiosk, "desk-2-kiosk-qr").await;

    // The citizen pays from their bank app.
    let citizen = h.customer(VCB, 1_000_000);
    let tx = h
        .bank(VCB)
        .pay_qr("kiosk-1", &payload, &citizen.account, 0)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(wait_for(&kiosk, "#kiosk-paid").await, "Đã thanh toán");
    shot(&kiosk, "desk-3-kiosk-paid").await;
    assert_eq!(wait_for(&clerk, "#tx-id").await, tx.transaction_id);
    wait_for(&clerk, "#printed").await;

    // The fee receipt printed is the request's, decoded from its bytes.
    let mut files = Vec::new();
    for _ in 0..50 {
        files = std::fs::read_dir(state.path().join("printed"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(files.len(), 1, "printed once");
    let printed = escpos::read(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(printed.initialised && printed.cuts == 1);
    let mut m = h.merchant(DESK);
    let qr_id = qr::decode(&payload).unwrap().reference.unwrap().to_string();
    let request = m
        .client
        .get_fee_request(m.credentials.sign(
            "/paymentswitch.v1.Merchant/GetFeeRequest",
            pb::GetFeeRequestRequest { qr_id },
        ))
        .await
        .unwrap()
        .into_inner();
    let want = receipt::render::render(&receipt::Receipt::fee(&request), receipt::Paper::Mm80);
    assert_eq!(printed.raster.as_ref(), Some(&want));
    std::fs::write(screenshots().join("desk-4-receipt.png"), want.png()).unwrap();
    // The same receipt as PDF, for the dossier's file.
    let pdf = clerk
        .execute(
            "return fetch(document.getElementById('pdf').href).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b).slice(0, 5)))",
            vec![],
        )
        .await
        .unwrap();
    let head: Vec<u8> = serde_json::from_value(pdf).unwrap();
    assert_eq!(head, b"%PDF-");

    clerk.close().await.unwrap();
    kiosk.close().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    h.assert_ledger_clean().await;
}
