//! Receipts as a thermal printer gets them (issue #27): the bytes sent are
//! read back with our own ESC/POS reader and the raster compared with a
//! checked-in golden image, for both paper widths. `UPDATE_GOLDEN=1`
//! writes the golden images anew (look at them before committing); every
//! run leaves the rendered receipts under `target/receipts/` to look at.

use std::path::PathBuf;

use pos_agent::receipt::render::{Raster, render};
use pos_agent::receipt::{Counter, Paper, Receipt, escpos, pdf};
use proto::v1 as pb;

fn cash_out() -> pb::Transaction {
    pb::Transaction {
        transaction_id: "01a2505055356bf520abb1dfc1c92500".into(),
        kind: pb::TxKind::CashOut as i32,
        status: pb::TxStatus::Completed as i32,
        terminal_id: "tho-tang-1".into(),
        post_office_id: "tho-tang".into(),
        bank_bin: "970422".into(),
        bank_name: "MB".into(),
        account_masked: "******6789".into(),
        account_name: "NGUYEN VAN AN".into(),
        amount: 2_000_000,
        fee: 11_000,
        // 2026-12-07 18:42:11 in Vietnam.
        created_at_ms: 1_796_643_731_000,
        bank_reference: "MB-7781234".into(),
        ..Default::default()
    }
}

fn bill_by_card() -> pb::Transaction {
    pb::Transaction {
        transaction_id: "01a2505055356bf520abb1dfc1c92511".into(),
        kind: pb::TxKind::BillPayment as i32,
        status: pb::TxStatus::Completed as i32,
        terminal_id: "tho-tang-2".into(),
        post_office_id: "tho-tang".into(),
        bank_bin: "970436".into(),
        bank_name: "Vietcombank".into(),
        account_masked: "970436******1234".into(),
        card_token: "c0ffee".into(),
        amount: 356_000,
        fee: 2_000,
        created_at_ms: 1_796_643_800_000,
        biller: "EVN".into(),
        bill_customer: "PD01000000002".into(),
        bill_ids: vec!["EVN-2026-11".into()],
        funding: "card".into(),
        ..Default::default()
    }
}

fn counter() -> Counter {
    Counter {
        post_office_name: "Bưu điện Thổ Tang".into(),
        teller: "Nguyễn Thị Lan".into(),
    }
}

fn workspace_target() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/receipts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Print `t`, read the printer's bytes back, and compare the raster with
/// the golden image `name`.
fn printed_matches_golden(t: &pb::Transaction, paper: Paper, name: &str) -> Raster {
    let receipt = Receipt::of(t, &counter());
    let raster = render(&receipt, paper);
    assert_eq!(raster.width, paper.width_dots());
    std::fs::write(workspace_target().join(format!("{name}.png")), raster.png()).unwrap();

    let bytes = escpos::commands(&raster).unwrap();
    let printed = escpos::read(&bytes).unwrap();
    assert!(printed.initialised, "ESC @ first");
    assert_eq!(printed.cuts, 1, "one cut at the end");
    assert!(printed.fed_lines >= 1, "fed before the cut");
    let got = printed.raster.expect("a raster was printed");
    assert_eq!(got, raster, "the printer's raster is the image drawn");

    let golden_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.png"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, got.png()).unwrap();
    }
    let golden =
        Raster::from_png(&std::fs::read(&golden_path).unwrap_or_else(|e| {
            panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden_path.display())
        }))
        .unwrap();
    assert_eq!(
        (got.width, got.height),
        (golden.width, golden.height),
        "{name}: size"
    );
    let differing = got
        .pixels
        .iter()
        .zip(&golden.pixels)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 0,
        "{name}: {differing} pixels differ from the golden image; see target/receipts/{name}.png"
    );
    got
}

#[test]
fn a_cash_out_prints_as_the_golden_receipt_on_both_papers() {
    let narrow = printed_matches_golden(&cash_out(), Paper::Mm58, "cash-out-58");
    let wide = printed_matches_golden(&cash_out(), Paper::Mm80, "cash-out-80");
    assert!(narrow.height > 600, "a whole receipt: {}", narrow.height);
    assert!(wide.height > 600, "a whole receipt: {}", wide.height);
}

#[test]
fn a_bill_paid_by_card_prints_the_masked_card() {
    printed_matches_golden(&bill_by_card(), Paper::Mm58, "bill-card-58");
}

/// What the receipt says, before it is drawn: the teller, the amount in
/// words, a signature line only where cash is paid out, and the card only
/// masked.
#[test]
fn a_receipt_says_who_what_and_how_much_in_vietnamese() {
    let text = |t: &pb::Transaction| {
        Receipt::of(t, &counter())
            .lines
            .iter()
            .map(|l| format!("{} {}", l.left, l.right))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let out = text(&cash_out());
    for expected in [
        "BƯU ĐIỆN THỔ TANG",
        "RÚT TIỀN MẶT",
        "Giao dịch viên Nguyễn Thị Lan",
        "Thời gian 07/12/2026 18:42:11",
        "Tổng cộng 2.011.000 ₫",
        "(Hai triệu không trăm mười một nghìn đồng)",
        "Chữ ký khách hàng",
        "01a2505055356bf520abb1dfc1c92500",
    ] {
        assert!(out.contains(expected), "{expected:?} in\n{out}");
    }
    // The record's teller, when the counter sent one, over the reprinter.
    let mut served = cash_out();
    served.teller = "Trần Văn Bình".into();
    assert!(text(&served).contains("Giao dịch viên Trần Văn Bình"));
    let bill = text(&bill_by_card());
    assert!(bill.contains("Thẻ 970436******1234"), "{bill}");
    assert!(bill.contains("Hình thức Thẻ"), "{bill}");
    assert!(!bill.contains("Chữ ký"), "{bill}");
}

/// The same receipt as a PDF: one page the paper's width, the raster as
/// its image.
#[test]
fn a_receipt_is_also_a_pdf() {
    let raster = render(&Receipt::of(&cash_out(), &counter()), Paper::Mm80);
    let bytes = pdf::pdf(&raster);
    std::fs::write(workspace_target().join("cash-out-80.pdf"), &bytes).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("/Subtype /Image"), "an image");
    assert!(text.contains(&format!("/Width {}", raster.width)));
    assert!(text.contains(&format!("/Height {}", raster.height)));
    assert!(text.contains("/BitsPerComponent 1"));
    // 80 mm paper: 576 dots at 203 dpi are 204.3 points.
    assert!(text.contains("/MediaBox [0 0 204.29"), "the paper's width");
}

/// A printer on the network (raw port 9100) gets the same bytes: a
/// listener on loopback stands in for it.
#[test]
fn a_network_printer_gets_the_receipt() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let printer = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let raster = render(&Receipt::of(&cash_out(), &counter()), Paper::Mm80);
    let target = escpos::Target::parse(&format!("127.0.0.1:{port}")).unwrap();
    escpos::print(&raster, &target).unwrap();
    let got = escpos::read(&printer.join().unwrap()).unwrap();
    assert_eq!(got.raster.unwrap(), raster);
    // Nobody listening: a clear error, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().port();
    drop(closed);
    let e = escpos::print(
        &raster,
        &escpos::Target::Network {
            host: "127.0.0.1".into(),
            port: gone,
        },
    )
    .unwrap_err();
    assert!(e.contains(&format!("127.0.0.1:{gone}")), "{e}");
}
