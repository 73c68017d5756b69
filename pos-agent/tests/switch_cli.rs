//! The merchant, bank, bill, settlement and float commands as a user runs them, against a
//! switch in-process: `--json` output with `transaction_id` and `status`,
//! errors as `{"error": {...}}` with a non-zero exit.

use std::process::Output;

use serde_json::Value;
use tests::Harness;

async fn pos_agent(h: &Harness, profile: &str, args: &[&str]) -> Output {
    let profile = h
        .data_dir()
        .join("profiles")
        .join(format!("{profile}.toml"));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pos-agent"));
    command
        .arg("--profile")
        .arg(profile)
        .arg("--json")
        .args(args);
    command.output().await.expect("pos-agent runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn a_merchant_sells_by_qr_and_is_told() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer("970436", 1_000_000);
    let out = pos_agent(
        &h,
        "tap-hoa-tho-tang",
        &[
            "qr",
            "create",
            "--amount",
            "65000",
            "--reference",
            "HD-77",
            "--purpose",
            "banh mi",
        ],
    )
    .await;
    assert!(out.status.success());
    let code = json(&out);
    let payload = code["payload"].as_str().unwrap().to_string();
    assert!(code["qr_id"].as_str().is_some_and(|q| !q.is_empty()));
    assert_eq!(qr::decode(&payload).unwrap().bill_number, Some("HD-77"));

    let watcher = {
        let profile = h.data_dir().join("profiles/tap-hoa-tho-tang.toml");
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .arg("--profile")
            .arg(profile)
            .args(["--json", "payments", "watch", "--count", "1"])
            .output()
    };
    let pay_args = [
        "pay-qr",
        "--payer-account",
        &payer.account,
        "--payload",
        &payload,
    ];
    // The watcher may start after the payment: it reads from the first.
    let pay = pos_agent(&h, "bank-970436", &pay_args);
    let (watched, paid) = tokio::join!(watcher, pay);
    let paid = json(&paid);
    assert_eq!(paid["status"], "completed");
    let watched = watched.unwrap();
    assert!(watched.status.success());
    let line: Value =
        serde_json::from_slice(watched.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["transaction_id"], paid["transaction_id"]);
    assert_eq!(line["order_reference"], "HD-77");

    let listed = json(&pos_agent(&h, "tap-hoa-tho-tang", &["payments", "list"]).await);
    assert_eq!(listed["payments"].as_array().unwrap().len(), 1);

    // Paid again: an error object and a non-zero exit.
    let again = pos_agent(
        &h,
        "bank-970436",
        &[
            "pay-qr",
            "--payer-account",
            &payer.account,
            "--payload",
            &payload,
        ],
    )
    .await;
    assert!(!again.status.success());
    assert_eq!(json(&again)["error"]["code"], "qr_already_paid");
    // A teller's profile cannot pay a code.
    let wrong = pos_agent(
        &h,
        "tho-tang-1",
        &[
            "pay-qr",
            "--payer-account",
            &payer.account,
            "--payload",
            &payload,
        ],
    )
    .await;
    assert!(!wrong.status.success());
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_teller_inquires_and_pays_bills() {
    let h = Harness::start(|_| {}).await;
    let c = h.bill_customer("EVN", 2);
    let inquiry = json(
        &pos_agent(
            &h,
            "tho-tang-1",
            &[
                "bill",
                "inquire",
                "--biller",
                "EVN",
                "--customer",
                &c.customer,
            ],
        )
        .await,
    );
    assert_eq!(inquiry["customer_name"], c.name.as_str());
    assert_eq!(inquiry["bills"].as_array().unwrap().len(), 2);
    let ids: Vec<&str> = inquiry["bills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bill_id"].as_str().unwrap())
        .collect();
    let paid = json(
        &pos_agent(
            &h,
            "tho-tang-1",
            &[
                "bill",
                "pay",
                "--biller",
                "EVN",
                "--customer",
                &c.customer,
                "--bills",
                &ids.join(","),
                "--funding",
                "cash",
            ],
        )
        .await,
    );
    assert_eq!(paid["status"], "completed");
    assert_eq!(paid["amount"], c.amount_due);
    assert!(
        paid["transaction_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32)
    );

    let v = h.bill_customer("VIETTEL", 1);
    let shown = json(
        &pos_agent(
            &h,
            "tho-tang-2",
            &[
                "bill",
                "pay",
                "--biller",
                "VIETTEL",
                "--customer",
                &v.customer,
                "--funding",
                "qr",
            ],
        )
        .await,
    );
    assert_eq!(shown["status"], "pending");
    let payer = h.customer("970422", 1_000_000);
    let paid = json(
        &pos_agent(
            &h,
            "bank-970422",
            &[
                "pay-qr",
                "--payer-account",
                &payer.account,
                "--payload",
                shown["qr_payload"].as_str().unwrap(),
            ],
        )
        .await,
    );
    // The bank's payment is its own transaction, paying the teller's.
    assert_eq!(
        (&paid["status"], &paid["pays_for_transaction_id"]),
        (&"completed".into(), &shown["transaction_id"])
    );

    let none = pos_agent(
        &h,
        "tho-tang-1",
        &[
            "bill",
            "pay",
            "--biller",
            "EVN",
            "--customer",
            &c.customer,
            "--funding",
            "cash",
        ],
    )
    .await;
    assert!(!none.status.success());
    assert_eq!(json(&none)["error"]["code"], "bill_not_due");
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_operator_closes_and_reports_a_window_and_a_bank_reconciles() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer("970422", 0);
    let cash_in = json(
        &pos_agent(
            &h,
            "tho-tang-1",
            &[
                "cash-in",
                "--bank",
                "970422",
                "--account",
                &c.account,
                "--amount",
                "300000",
            ],
        )
        .await,
    );
    assert_eq!(cash_in["status"], "completed");
    let closed = json(&pos_agent(&h, "operator", &["settlement", "close"]).await);
    assert_eq!(closed["window"], 1);
    let csv_path = h.data_dir().join("report-1.csv");
    let report = json(
        &pos_agent(
            &h,
            "operator",
            &[
                "settlement",
                "report",
                "--window",
                "1",
                "--csv",
                csv_path.to_str().unwrap(),
            ],
        )
        .await,
    );
    let participants = report["participants"].as_array().unwrap();
    let mb = participants
        .iter()
        .find(|p| p["participant"] == "970422")
        .unwrap();
    assert_eq!(
        (
            mb["kind"].as_str(),
            mb["net"].as_i64(),
            mb["count"].as_u64()
        ),
        (Some("bank"), Some(300_000), Some(1))
    );
    for key in [
        "participant",
        "kind",
        "count",
        "gross_debits",
        "gross_credits",
        "fees",
        "net",
    ] {
        assert!(participants.iter().all(|p| p.get(key).is_some()), "{key}");
    }
    assert!(
        std::fs::read_to_string(&csv_path)
            .unwrap()
            .starts_with("participant,kind,count,")
    );
    let other = pos_agent(
        &h,
        "bank-970422",
        &["settlement", "report", "--window", "1", "--bank", "970436"],
    )
    .await;
    assert!(!other.status.success());
    assert_eq!(json(&other)["error"]["code"], "permission_denied");

    let statement = h.data_dir().join("statement.csv");
    std::fs::write(
        &statement,
        format!(
            "transaction_id,amount,direction,status,note\n{},300000,credit,completed,ok\n",
            cash_in["transaction_id"].as_str().unwrap()
        ),
    )
    .unwrap();
    let r = json(
        &pos_agent(
            &h,
            "bank-970422",
            &[
                "reconcile",
                "--window",
                "1",
                "--file",
                statement.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert_eq!(
        [
            &r["matched"],
            &r["missing_at_bank"],
            &r["missing_at_switch"],
            &r["amount_mismatch"],
            &r["status_mismatch"]
        ],
        [
            &Value::from(1),
            &Value::from(0),
            &Value::from(0),
            &Value::from(0),
            &Value::from(0)
        ]
    );
    let settled = json(
        &pos_agent(
            &h,
            "operator",
            &[
                "settlement",
                "settle",
                "--window",
                "1",
                "--reference",
                "NAPAS-1",
            ],
        )
        .await,
    );
    assert_eq!(settled["state"], "settled");
    let float = json(
        &pos_agent(
            &h,
            "operator",
            &[
                "float",
                "topup",
                "--post-office",
                "tho-tang",
                "--amount",
                "1000000",
            ],
        )
        .await,
    );
    assert_eq!(float["efloat"], 500_000_000u64 - 300_000 + 1_000_000);
    let shown = json(&pos_agent(&h, "tho-tang-1", &["float", "show"]).await);
    assert_eq!(shown["post_offices"].as_array().unwrap().len(), 1);
    h.assert_ledger_clean().await;
}

/// In `--json` mode every failure is one JSON object: argument errors are
/// `usage` (exit 2), and a negative or oversized amount gets the switch's
/// amount codes (exit 1), never clap's plain-text usage.
#[tokio::test]
async fn json_mode_reports_argument_errors_and_bad_amounts_as_json() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer("970422", 0);
    let cases: [(&[&str], &str, i32); 5] = [
        (
            &[
                "cash-in",
                "--bank",
                "970422",
                "--account",
                &c.account,
                "--amount",
                "-5",
            ],
            "amount_below_minimum",
            1,
        ),
        (
            &[
                "cash-in",
                "--bank",
                "970422",
                "--account",
                &c.account,
                "--amount",
                "999999999999999999999",
            ],
            "amount_above_maximum",
            1,
        ),
        (&["cash-in", "--bank", "970422"], "usage", 2),
        (
            &[
                "cash-in",
                "--bank",
                "970422",
                "--account",
                "1",
                "--amount",
                "1.5",
            ],
            "usage",
            2,
        ),
        (&["no-such-command"], "usage", 2),
    ];
    for (args, code, exit) in cases {
        let out = pos_agent(&h, "tho-tang-1", args).await;
        let v = json(&out);
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
        assert!(
            !v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{args:?}: a message"
        );
        assert_eq!(out.status.code(), Some(exit), "{args:?}");
    }
}

/// pos-agent dials an `https://` switch with the CA and the caller's
/// certificate its profile names; without the certificate it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reaches_a_tls_switch_with_the_profiles_ca_and_certificate() {
    use tests::tls::{Ca, TlsSwitch, write};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("switch CA");
    let switch = TlsSwitch::start(dir.path(), &ca).await;
    let (cert, key) = ca.issue(&["operator"]);
    let pki = &switch.pki_dir;
    let profile = |with_certificate: bool| {
        let mut text = format!(
            "role = \"operator\"\nid = \"operator\"\nswitch = \"{}\"\nsecret = \"{}\"\nca = \"{}\"\n",
            switch.https.replace("127.0.0.1", "localhost"),
            switch.secret("operator"),
            pki.join("ca.pem").display(),
        );
        if with_certificate {
            text.push_str(&format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                write(pki, "operator.pem", &cert).display(),
                write(pki, "operator.key", &key).display(),
            ));
        }
        write(
            dir.path(),
            &format!("operator-{with_certificate}.toml"),
            &text,
        )
    };
    let run = |path: std::path::PathBuf| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .arg("--profile")
            .arg(path)
            .args(["--json", "admin", "check"])
            .output()
            .await
            .expect("pos-agent runs")
    };
    let out = run(profile(true)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["balanced"], true);
    let out = run(profile(false)).await;
    assert!(!out.status.success());
    switch.stop().await;
}

/// A teller reprints a cash-in's receipt: to a file taking the printer's
/// bytes (what `/dev/usb/lp0` would get), and as PNG and PDF, with the
/// post office's name from the profile.
#[tokio::test]
async fn a_teller_reprints_a_receipt_to_a_printer_file_png_and_pdf() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer("970422", 0);
    let out = pos_agent(
        &h,
        "tho-tang-1",
        &[
            "cash-in",
            "--bank",
            "970422",
            "--account",
            &c.account,
            "--amount",
            "500000",
        ],
    )
    .await;
    let id = json(&out)["transaction_id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (bin, png, pdf) = (
        dir.path().join("lp0"),
        dir.path().join("r.png"),
        dir.path().join("r.pdf"),
    );
    let out = pos_agent(
        &h,
        "tho-tang-1",
        &[
            "tx",
            "print",
            &id,
            "--printer",
            bin.to_str().unwrap(),
            "--paper",
            "58",
            "--png",
            png.to_str().unwrap(),
            "--pdf",
            pdf.to_str().unwrap(),
            "--teller",
            "Nguyễn Thị Lan",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["done"].as_array().unwrap().len(), 3);
    let printed = pos_agent::receipt::escpos::read(&std::fs::read(&bin).unwrap()).unwrap();
    let raster = printed.raster.unwrap();
    assert_eq!(raster.width, 384);
    assert_eq!(printed.cuts, 1);
    let saved =
        pos_agent::receipt::render::Raster::from_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(saved, raster, "the PNG is what was printed");
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
    // What it printed: the receipt of that transaction at that counter.
    let t = h.teller("tho-tang-1").get(&id).await.unwrap();
    let profile: toml::Value = toml::from_str(
        &std::fs::read_to_string(h.data_dir().join("profiles/tho-tang-1.toml")).unwrap(),
    )
    .unwrap();
    let counter = pos_agent::receipt::Counter {
        post_office_name: profile["post_office_name"].as_str().unwrap().to_string(),
        teller: "Nguyễn Thị Lan".into(),
    };
    assert_eq!(counter.post_office_name, "Bưu điện Thổ Tang");
    let expected = pos_agent::receipt::render::render(
        &pos_agent::receipt::Receipt::of(&t.transaction.unwrap(), &counter),
        pos_agent::receipt::Paper::Mm58,
    );
    assert_eq!(raster, expected);

    // The counter's limits after that cash-in, the customer's with them.
    let out = pos_agent(
        &h,
        "tho-tang-1",
        &["limits", "--bank", "970422", "--account", &c.account],
    )
    .await;
    let limits = json(&out)["limits"].as_array().unwrap().clone();
    let used = |name: &str| {
        limits
            .iter()
            .find(|l| l["limit"] == name)
            .map(|l| (l["used"].as_u64().unwrap(), l["left"].as_u64().unwrap()))
            .unwrap()
    };
    assert_eq!(used("customer_daily"), (500_000, 19_500_000));
    assert_eq!(used("post_office_monthly"), (500_000, 4_999_500_000));
    let out = pos_agent(&h, "tho-tang-1", &["limits", "--bank", "970422"]).await;
    assert_eq!(json(&out)["error"]["code"], "usage");

    // Nowhere to print is a usage error.
    let out = pos_agent(&h, "tho-tang-1", &["tx", "print", &id]).await;
    assert_eq!(json(&out)["error"]["code"], "usage");
}

/// The pilot report as an operator takes it away: XLSX with a Vietnamese
/// title block and a sheet per view, read back with calamine and compared
/// cell by cell with the JSON of the same report; CSV with the same rows.
#[tokio::test]
async fn an_operator_takes_the_months_report_as_xlsx_csv_and_json() {
    use calamine::{Data, Reader, Xlsx};
    let h = Harness::start(|_| {}).await;
    let c = h.customer("970422", 0);
    for (i, amount) in [(1, "300000"), (2, "450000")] {
        let out = pos_agent(
            &h,
            "tho-tang-1",
            &[
                "cash-in",
                "--bank",
                "970422",
                "--account",
                &c.account,
                "--amount",
                amount,
                "--request-id",
                &format!("x{i}"),
            ],
        )
        .await;
        assert!(out.status.success());
    }
    // This month in Vietnam (dd/mm/yyyy …).
    let now = pos_agent::receipt::vietnam_time(proto::auth::now_ms());
    let month = format!("{}-{}", &now[6..10], &now[3..5]);
    let dir = tempfile::tempdir().unwrap();
    let (xlsx, csv) = (dir.path().join("r.xlsx"), dir.path().join("r.csv"));
    for (format, path) in [("xlsx", &xlsx), ("csv", &csv)] {
        let out = pos_agent(
            &h,
            "operator",
            &[
                "admin",
                "report",
                "--month",
                &month,
                "--format",
                format,
                "--out",
                path.to_str().unwrap(),
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let report = json(
        &pos_agent(
            &h,
            "operator",
            &["admin", "report", "--month", &month, "--format", "json"],
        )
        .await,
    );
    let mut book: Xlsx<_> = calamine::open_workbook(&xlsx).unwrap();
    assert_eq!(
        book.sheet_names(),
        vec!["Toàn tỉnh", "Theo xã", "Theo bưu điện", "Đơn vị QR"]
    );
    let communes = book.worksheet_range("Theo xã").unwrap();
    let text = |r: u32, c: u32| match communes.get_value((r, c)) {
        Some(Data::String(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(text(0, 0), "UBND TỈNH VĨNH PHÚC");
    assert!(text(2, 0).contains(&month), "{}", text(2, 0));
    assert!(text(3, 0).starts_with("Ngày lập: "), "{}", text(3, 0));
    assert_eq!(text(5, 2), "Đơn vị");
    // Thổ Tang's cash-in row: count and value as numbers.
    let row = (6..communes.height() as u32)
        .find(|&r| text(r, 1) == "tho-tang" && text(r, 4) == "Nộp tiền vào tài khoản")
        .expect("Thổ Tang's cash-in row");
    assert_eq!(text(row, 2), "Thị trấn Thổ Tang");
    let number = |r: u32, c: u32| match communes.get_value((r, c)) {
        Some(Data::Float(f)) => *f as u64,
        other => panic!("{other:?}"),
    };
    let units = report["units"].as_array().unwrap();
    let tt = units
        .iter()
        .find(|u| u["level"] == "commune" && u["id"] == "tho-tang")
        .unwrap();
    let cash_in = tt["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["product"] == "cash_in")
        .unwrap();
    assert_eq!(number(row, 5), cash_in["count"].as_u64().unwrap());
    assert_eq!(number(row, 6), cash_in["value"].as_u64().unwrap());
    assert_eq!((number(row, 5), number(row, 6)), (2, 750_000));
    // Every commune of the JSON has its rows in the sheet, and nothing else.
    let sheet_ids: std::collections::BTreeSet<String> =
        (6..communes.height() as u32).map(|r| text(r, 1)).collect();
    let json_ids: std::collections::BTreeSet<String> = units
        .iter()
        .filter(|u| u["level"] == "commune")
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sheet_ids, json_ids);
    // The CSV: a header, then Thổ Tang's cash-in among its rows.
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("level,id,name,commune,product,count,value,"));
    assert!(
        csv.lines()
            .any(|l| l.starts_with("commune,tho-tang,Thị trấn Thổ Tang,tho-tang,cash_in,2,750000,")),
        "{csv}"
    );
    // The aggregates check clean.
    let check = json(&pos_agent(&h, "operator", &["admin", "report-check"]).await);
    assert_eq!(check["differing"].as_array().unwrap().len(), 0);
}
