//! The operations console in a real browser (issue #18): Debian's Chromium
//! driven over WebDriver (chromedriver, through fantoccini). An operator
//! signs in, watches a payment made over gRPC appear, closes a window and
//! sees its chart, resolves a reconciliation exception; an action whose
//! CSRF token was taken out of the form is refused; a bank's user is denied
//! another bank's report. Every page visited is saved as a screenshot in
//! `target/console-screenshots/` (README).
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them).

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use proto::v1 as pb;
use tests::console::{Console, console_user};
use tests::{Harness, class_count};

const MB: &str = "970422";

/// chromedriver on a free port, stopped when dropped.
struct Driver(std::process::Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
    Driver(child, port)
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1100"],
        }),
    );
    let url = format!("http://127.0.0.1:{}", d.1);
    for _ in 0..100 {
        // Plain HTTP to chromedriver on loopback: no TLS stack needed.
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        if let Ok(c) = b.connect(&url).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a session");
}

fn screenshots() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(c: &Client, console: &Console, name: &str, password: &str) {
    c.goto(&console.url("/login")).await.unwrap();
    c.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(c, "#sign-in").await;
    c.wait().for_element(Locator::Css("#who")).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_and_a_bank_use_the_console_in_chromium() {
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, false).await;
    let ops_password = console_user(&h, "ops", "operator", "").await;
    let bank_password = console_user(&h, "mb", "bank", MB).await;
    let d = driver();
    let c = browser(&d).await;

    c.goto(&console.url("/login")).await.unwrap();
    shot(&c, "login").await;
    sign_in(&c, &console, "ops", &ops_password).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/overview");
    // The live charts fill in from /api/overview.
    c.wait()
        .for_element(Locator::XPath("//span[@id='rps-now' and text()!='…']"))
        .await
        .unwrap();
    shot(&c, "overview").await;

    // A payment made over gRPC appears in the transactions list.
    c.goto(&console.url("/transactions?terminal=tho-tang-1"))
        .await
        .unwrap();
    let customer = h.customer(MB, 1_000_000);
    let tx = h
        .teller("tho-tang-1")
        .cash_in("browser-1", MB, &customer.account, 420_000)
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..50 {
        c.refresh().await.unwrap();
        if c.source().await.unwrap().contains(&tx.transaction_id) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the payment appears");
    shot(&c, "transactions").await;
    c.find(Locator::LinkText(&tx.transaction_id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#legs")).await.unwrap();
    assert!(text(&c, "#receipt").await.contains("CASH-IN"));
    shot(&c, "transaction").await;

    // Closing without the CSRF token (taken out of the form) is refused.
    c.goto(&console.url("/settlement")).await.unwrap();
    c.execute(
        "document.querySelector('#close input[name=csrf]').remove()",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#close-window").await;
    c.wait().for_element(Locator::Css("#error")).await.unwrap();
    assert!(text(&c, "#error").await.contains("CSRF"));
    assert_eq!(h.switch.windows().unwrap()[0].state.label(), "open");
    // With it, the window closes and its chart shows.
    c.goto(&console.url("/settlement")).await.unwrap();
    shot(&c, "settlement").await;
    click(&c, "#close-window").await;
    c.wait()
        .for_element(Locator::Css("#positions-chart"))
        .await
        .unwrap();
    assert_eq!(text(&c, "#state").await, "closed");
    let bars = c
        .find_all(Locator::Css("#positions-chart rect"))
        .await
        .unwrap();
    assert!(bars.len() >= 3, "a bar per participant");
    shot(&c, "window").await;

    // MB's statement misses the cash-in: an exception, resolved here.
    let report = h
        .settlement(&format!("bank-{MB}"))
        .reconcile(1, b"transaction_id,amount,direction,status\n", 64, None)
        .await
        .unwrap();
    assert_eq!(class_count(&report, "missing_at_bank"), 1);
    c.goto(&console.url("/reconciliation")).await.unwrap();
    c.find(Locator::Css("form.resolve input[name=note]"))
        .await
        .unwrap()
        .send_keys("MB's file was cut short; resent and matched")
        .await
        .unwrap();
    click(&c, "form.resolve button").await;
    c.wait()
        .for_element(Locator::XPath("//td[contains(., 'resent and matched')]"))
        .await
        .unwrap();
    shot(&c, "reconciliation").await;
    let trail = h.switch.audit_trail().unwrap();
    assert_eq!(trail.last().unwrap()["by"], "console:ops");

    for (page, name) in [
        ("/liquidity", "liquidity"),
        ("/provisioning", "provisioning"),
    ] {
        c.goto(&console.url(page)).await.unwrap();
        c.wait().for_element(Locator::Css("table")).await.unwrap();
        shot(&c, name).await;
    }
    // The month's pilot report: Thổ Tang's cash-in, a bar per commune; one
    // commune chosen from the form.
    c.goto(&console.url("/reports")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#communes-chart"))
        .await
        .unwrap();
    let tho_tang = text(&c, "#unit-tho-tang").await;
    assert!(
        tho_tang.contains("Cash-in") && tho_tang.contains("420,000"),
        "{tho_tang}"
    );
    let bars = c
        .find_all(Locator::Css("#communes-chart rect"))
        .await
        .unwrap();
    assert!(bars.len() >= 4, "a bar per pilot commune at least");
    shot(&c, "reports").await;
    click(&c, "select[name=commune] option[value=huong-dao]").await;
    click(&c, "#report-form button").await;
    // The form's page, not the one before (which had every commune).
    for _ in 0..100 {
        if c.current_url()
            .await
            .unwrap()
            .query()
            .is_some_and(|q| q.contains("commune=huong-dao"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.wait()
        .for_element(Locator::Css("#unit-huong-dao"))
        .await
        .unwrap();
    assert!(
        c.find(Locator::Css("#unit-tho-tang")).await.is_err(),
        "one commune"
    );
    c.goto(&console.url("/provisioning/merchants/cafe-tam-dao/sign"))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#qr svg")).await.unwrap();
    shot(&c, "merchant-sign").await;
    c.find(Locator::Css("#sign-out")).await.err(); // not on the printable page
    c.goto(&console.url("/overview")).await.unwrap();
    click(&c, "#sign-out").await;
    c.wait().for_element(Locator::Css("#login")).await.unwrap();

    // MB's staff: their own line, and a refusal for another bank's.
    sign_in(&c, &console, "mb", &bank_password).await;
    c.goto(&console.url("/settlement/1")).await.unwrap();
    c.wait().for_element(Locator::Css("#report")).await.unwrap();
    let own = text(&c, "#report").await;
    assert!(own.contains(MB) && !own.contains("970436"), "{own}");
    shot(&c, "bank-window").await;
    c.goto(&console.url("/settlement/1?participant=970436"))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#error")).await.unwrap();
    assert!(text(&c, "#error").await.contains("permission_denied"));
    shot(&c, "bank-denied").await;
    // The pilot report, of MB's customers only.
    c.goto(&console.url("/reports")).await.unwrap();
    c.wait().for_element(Locator::Css("#period")).await.unwrap();
    assert!(
        text(&c, "#period")
            .await
            .contains("970422's customers only")
    );
    shot(&c, "bank-reports").await;
    c.close().await.unwrap();
    h.assert_ledger_clean().await;
}

/// The Admin API's answer is what `pos-agent admin console-user` prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_users_have_distinct_passwords_and_names_are_unique() {
    let h = Harness::start(|_| {}).await;
    let a = console_user(&h, "ops-a", "operator", "").await;
    let b = console_user(&h, "ops-b", "operator", "").await;
    assert_ne!(a, b);
    let e = h
        .admin()
        .create_console_user(h.credentials("operator").sign(
            "/paymentswitch.v1.Admin/CreateConsoleUser",
            pb::CreateConsoleUserRequest {
                name: "ops-a".into(),
                role: "operator".into(),
                bank_bin: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(tests::error_code(&e), "already_exists");
    let stored = h.switch.store.console_user("ops-a").unwrap().unwrap();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "{}",
        stored.password_hash
    );
    assert!(!stored.password_hash.contains(&a));
}
