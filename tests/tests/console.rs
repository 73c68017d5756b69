//! The operations console over HTTP (issue #18): sign-in with a console
//! user's password, the session cookie's flags, CSRF on every action, the
//! operator's pages (a payment made over gRPC found and shown with its
//! ledger legs and receipt, a window closed and its report, liquidity moved,
//! a merchant's printable code) and a bank user who sees only their bank.
//! `console_browser.rs` drives the same pages in Chromium.

use proto::v1 as pb;
use tests::Harness;
use tests::console::{Client, Console, console_user};

const MB: &str = "970422";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_strict_http_only_session_and_signing_out_ends_it() {
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, true).await;
    let password = console_user(&h, "alice", "operator", "").await;
    assert_eq!(password.len(), 24);
    let mut c = Client::new(&console);
    let r = c.get("/overview").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = c.sign_in("alice", "not-her-password").await;
    assert_eq!(r.status, 401);
    assert!(c.cookie.is_none());
    let r = c.sign_in("nobody", &password).await;
    assert_eq!(r.status, 401, "an unknown name is refused the same way");
    let r = c.sign_in("alice", &password).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/overview")));
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let page = c.get("/overview").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Signed in as alice (operator)"),
        "{}",
        page.body
    );
    let json = c.get("/api/overview").await;
    assert_eq!(json.status, 200);
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["reversal_queue"], 0);
    assert!(v["breakers"].as_array().unwrap().len() >= 12, "{v}");
    // Signing out needs the CSRF token too; then the cookie opens nothing.
    let csrf = page.csrf();
    let kept = c.cookie.clone();
    let r = c.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status, 403);
    let r = c.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    c.cookie = kept;
    let r = c.get("/overview").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_payment_and_closes_a_window_but_not_without_the_csrf_token() {
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, false).await;
    let password = console_user(&h, "ops", "operator", "").await;
    let mut c = Client::new(&console);
    assert_eq!(c.sign_in("ops", &password).await.status, 303);
    // A cash-in over gRPC shows in the search and on its own page.
    let customer = h.customer(MB, 1_000_000);
    let tx = h
        .teller("tho-tang-1")
        .cash_in("console-1", MB, &customer.account, 750_000)
        .await
        .unwrap();
    let found = c.get("/transactions?terminal=tho-tang-1").await;
    assert!(found.body.contains(&tx.transaction_id), "{}", found.body);
    let last4 = &customer.account[customer.account.len() - 4..];
    let by_account = c.get(&format!("/transactions?account={last4}")).await;
    assert!(by_account.body.contains(&tx.transaction_id));
    let none = c.get("/transactions?terminal=tam-dao-1").await;
    assert!(!none.body.contains(&tx.transaction_id));
    let since = c
        .get("/transactions?from=2000-01-01&status=completed")
        .await;
    assert!(since.body.contains(&tx.transaction_id));
    let before = c.get("/transactions?to=2000-01-01").await;
    assert!(!before.body.contains(&tx.transaction_id));
    assert_eq!(c.get("/transactions?from=2026-13").await.status, 400);
    // Shaped like a date, but no such day.
    assert_eq!(c.get("/transactions?to=2026-02-30").await.status, 400);
    let shown = c.get(&format!("/transactions/{}", tx.transaction_id)).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains("id=\"legs\"") && shown.body.contains("posted"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("750,000") && shown.body.contains("CASH-IN"));
    assert!(
        !shown.body.contains(&customer.account),
        "the account is masked"
    );

    // Closing the window: refused without the token, done with it.
    let page = c.get("/settlement").await;
    assert!(page.body.contains("Close window 1"));
    let r = c.post("/settlement/close", &[("window", "1")]).await;
    assert_eq!(r.status, 403);
    let r = c
        .post("/settlement/close", &[("window", "1"), ("csrf", "x")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.switch.windows().unwrap()[0].state.label(), "open");
    let r = c
        .post(
            "/settlement/close",
            &[("window", "1"), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/settlement/1"))
    );
    let report = c.get("/settlement/1").await;
    assert!(
        report.body.contains("id=\"positions-chart\""),
        "{}",
        report.body
    );
    assert!(report.body.contains(MB));
    let csv = c.get("/settlement/1/csv").await;
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with("participant,kind,"), "{}", csv.body);
    assert!(csv.body.contains(MB));
    // Settled with a reference.
    let r = c
        .post(
            "/settlement/1/settle",
            &[("reference", "NAPAS-2026-12-01"), ("csrf", &report.csrf())],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(c.get("/settlement").await.body.contains("NAPAS-2026-12-01"));
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liquidity_moves_and_a_merchant_sign_is_printable() {
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, false).await;
    let password = console_user(&h, "ops", "operator", "").await;
    let mut c = Client::new(&console);
    c.sign_in("ops", &password).await;
    let page = c.get("/liquidity").await;
    assert!(
        page.body.contains("tho-tang") && page.body.contains("500,000,000"),
        "{}",
        page.body
    );
    let r = c
        .post(
            "/liquidity/topup",
            &[
                ("post_office", "tho-tang"),
                ("amount", "25,000,000"),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.get("/liquidity").await.body.contains("525,000,000"));
    let r = c
        .post(
            "/liquidity/topup",
            &[("post_office", "tho-tang"), ("amount", "1000")],
        )
        .await;
    assert_eq!(r.status, 403, "no CSRF token, no top-up");
    let r = c
        .post(
            "/liquidity/topup",
            &[
                ("post_office", "tho-tang"),
                ("amount", "lots"),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    let prov = c.get("/provisioning").await;
    assert!(prov.body.contains("cafe-tam-dao") && prov.body.contains("tho-tang-1"));
    let sign = c.get("/provisioning/merchants/cafe-tam-dao/sign").await;
    assert_eq!(sign.status, 200);
    assert!(sign.body.contains("<svg") && sign.body.contains("CAFE MAY TAM DAO"));
    assert!(!sign.body.contains("<?xml"), "an SVG inline in HTML");
    let payload = sign
        .body
        .split("<!-- ")
        .nth(1)
        .unwrap()
        .split(" -->")
        .next()
        .unwrap();
    let code = qr::decode(payload).unwrap();
    assert_eq!(code.merchant_name, Some("CAFE MAY TAM DAO"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_user_sees_only_their_bank() {
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, false).await;
    let password = console_user(&h, "mb-settlement", "bank", MB).await;
    // Traffic with two banks, then the window closes.
    let mut t = h.teller("tho-tang-1");
    for (i, bin) in [MB, "970436"].iter().enumerate() {
        let c = h.customer(bin, 1_000_000);
        t.cash_in(&format!("b-{i}"), bin, &c.account, 300_000)
            .await
            .unwrap();
    }
    h.settlement("operator").close().await;
    let mut c = Client::new(&console);
    let r = c.sign_in("mb-settlement", &password).await;
    assert_eq!(r.header("location"), Some("/settlement"));
    let own = c.get("/settlement/1").await;
    assert_eq!(own.status, 200);
    assert!(
        own.body.contains(MB) && !own.body.contains("970436"),
        "{}",
        own.body
    );
    let other = c.get("/settlement/1?participant=970436").await;
    assert_eq!(other.status, 403, "another bank's report is refused");
    assert!(other.body.contains("permission_denied"), "{}", other.body);
    let csv = c.get("/settlement/1/csv?participant=970436").await;
    assert_eq!(csv.status, 403);
    for page in [
        "/overview",
        "/api/overview",
        "/transactions",
        "/liquidity",
        "/provisioning",
    ] {
        assert_eq!(c.get(page).await.status, 403, "{page}");
    }
    let r = c
        .post(
            "/settlement/close",
            &[("window", "2"), ("csrf", &own.csrf())],
        )
        .await;
    assert_eq!(r.status, 403, "a bank does not close windows");
    // Bank users are made only by operators, for a bank the switch routes.
    let e = h
        .admin()
        .create_console_user(h.credentials("tho-tang-1").sign(
            "/paymentswitch.v1.Admin/CreateConsoleUser",
            pb::CreateConsoleUserRequest {
                name: "eve".into(),
                role: "operator".into(),
                bank_bin: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = h
        .admin()
        .create_console_user(h.credentials("operator").sign(
            "/paymentswitch.v1.Admin/CreateConsoleUser",
            pb::CreateConsoleUserRequest {
                name: "x".into(),
                role: "bank".into(),
                bank_bin: "123456".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(tests::error_code(&e), "unknown_bank");
}

/// With the switch's certificate the console is HTTPS and its cookie
/// `Secure`; without one it will not serve beyond loopback in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_tls_with_the_switchs_certificate_and_refuses_clear_text_abroad() {
    use std::sync::Arc;
    use tests::tls::{Ca, write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let h = Harness::start(|_| {}).await;
    let password = console_user(&h, "ops", "operator", "").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("console CA");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let acceptor = switch::edge::console::tls_acceptor(
        &write(dir.path(), "console.pem", &cert),
        &write(dir.path(), "console.key", &key),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(switch::edge::console::serve(
        listener,
        h.switch.clone(),
        Some(acceptor),
        false,
        async {
            let _ = stopped.await;
        },
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let body = format!("name=ops&password={password}");
    tls.write_all(
        format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Clear text to the TLS port gets no page.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got).await;
    assert!(!String::from_utf8_lossy(&got).contains("Sign in"));
    let _ = stop.send(());

    // Beyond loopback without a certificate: refused at start.
    let config = switch::Config {
        data_dir: dir.path().join("abroad"),
        console_listen: Some("0.0.0.0:0".parse().unwrap()),
        ..switch::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = switch::server::run(listener, config, async {})
        .await
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("refusing to serve the console in clear"),
        "{e}"
    );
}

/// An operator lists the console's users, disables one (the session open
/// ends at its next request and the password no longer signs in), and
/// resets the password (a new one, shown once, signs in; the old does
/// not). A terminal may do none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_console_user_is_signed_out_and_a_reset_lets_them_back() {
    use tests::error_code;
    let h = Harness::start(|_| {}).await;
    let console = Console::start(&h, true).await;
    let password = console_user(&h, "olga", "operator", "").await;
    let mut c = Client::new(&console);
    assert_eq!(c.sign_in("olga", &password).await.status, 303);
    assert_eq!(c.get("/overview").await.status, 200);
    let operator = h.credentials("operator");
    let list = |creds: &proto::auth::Credentials| {
        let mut admin = h.admin();
        let req = creds.sign(
            "/paymentswitch.v1.Admin/ListConsoleUsers",
            pb::ListConsoleUsersRequest {},
        );
        async move { admin.list_console_users(req).await }
    };
    let users = list(&operator).await.unwrap().into_inner().users;
    let olga = users.iter().find(|u| u.name == "olga").unwrap();
    assert_eq!((olga.role.as_str(), olga.disabled_at_ms), ("operator", 0));
    assert!(olga.password_set_at_ms > 0);
    let e = list(&h.credentials("tho-tang-1")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    let disable = |name: &str, reason: &str| {
        let mut admin = h.admin();
        let req = operator.sign(
            "/paymentswitch.v1.Admin/DisableConsoleUser",
            pb::DisableConsoleUserRequest {
                name: name.into(),
                reason: reason.into(),
            },
        );
        async move { admin.disable_console_user(req).await }
    };
    let e = disable("nobody", "left").await.unwrap_err();
    assert_eq!(error_code(&e), "unknown_console_user");
    let e = disable("olga", " ").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let done = disable("olga", "left the team").await.unwrap().into_inner();
    assert_eq!(
        (done.disabled_by.as_str(), done.disabled_reason.as_str()),
        ("operator", "left the team")
    );
    assert!(done.disabled_at_ms > 0);
    let again = disable("olga", "twice").await.unwrap().into_inner();
    assert_eq!(
        (again.disabled_at_ms, again.disabled_reason.as_str()),
        (done.disabled_at_ms, "left the team"),
        "the first disabling stands"
    );
    let r = c.get("/overview").await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login")),
        "the open session ended"
    );
    let mut other = Client::new(&console);
    assert_eq!(other.sign_in("olga", &password).await.status, 401);

    let mut admin = h.admin();
    let reset = admin
        .reset_console_user_password(operator.sign(
            "/paymentswitch.v1.Admin/ResetConsoleUserPassword",
            pb::ResetConsoleUserPasswordRequest {
                name: "olga".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.password.len(), 24);
    assert_ne!(reset.password, password);
    assert_eq!(other.sign_in("olga", &password).await.status, 401);
    assert_eq!(other.sign_in("olga", &reset.password).await.status, 303);
    assert_eq!(other.get("/overview").await.status, 200);
    let users = list(&operator).await.unwrap().into_inner().users;
    let olga_now = users.iter().find(|u| u.name == "olga").unwrap();
    assert_eq!(olga_now.disabled_at_ms, 0, "enabled again");
    assert!(olga_now.password_set_at_ms > olga.password_set_at_ms);
    // A second reset ends the session the first one let in.
    admin
        .reset_console_user_password(operator.sign(
            "/paymentswitch.v1.Admin/ResetConsoleUserPassword",
            pb::ResetConsoleUserPasswordRequest {
                name: "olga".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(other.get("/overview").await.status, 303);
}

/// A session outlives the switch's restart (it is in the store, not the
/// node's memory), and what the store keeps of it is no credential: not the
/// cookie's token, nor the CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_a_restart_and_its_token_is_not_stored() {
    let h = Harness::start(|_| {}).await;
    let password = console_user(&h, "mai", "operator", "").await;
    let console = Console::start(&h, false).await;
    let mut browser = Client::new(&console);
    assert_eq!(browser.sign_in("mai", &password).await.status, 303);
    let token = browser
        .cookie
        .clone()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let page = browser.get("/overview").await;
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    drop(console);
    let h = h.restart(|_| {}).await;
    if !tests::on_postgres() {
        // The journal and fjall's files hold the session (its user's name
        // beside its key), never its token or CSRF token.
        let mut stored = Vec::new();
        tests::files(h.data_dir(), &mut stored);
        let has = |b: &[u8], s: &[u8]| b.windows(s.len()).any(|w| w == s);
        assert!(
            stored.iter().any(|(_, b)| has(b, b"console_session/")),
            "the session is stored"
        );
        for secret in [&token, &csrf] {
            let found: Vec<_> = stored
                .iter()
                .filter(|(_, b)| has(b, secret.as_bytes()))
                .map(|(p, _)| p.clone())
                .collect();
            assert!(found.is_empty(), "a secret in {found:?}");
        }
    }
    let console = Console::start(&h, false).await;
    let mut again = Client::new(&console);
    again.cookie = browser.cookie.clone();
    let page = again.get("/overview").await;
    assert_eq!(page.status, 200, "still signed in after the restart");
    assert!(page.body.contains(&csrf), "the same CSRF token");
}

/// A stored session ends by the switch's clock, whichever process wrote it:
/// one last used 31 minutes ago, or begun 9 hours ago, is refused (and
/// removed); one used a minute ago is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_sessions_end_by_the_switchs_clock() {
    let h = Harness::start(|_| {}).await;
    let _ = console_user(&h, "lan", "operator", "").await;
    let user = h.switch.store.console_user("lan").unwrap().unwrap();
    let console = Console::start(&h, false).await;
    let now = switch::clock::now_ms();
    let minute = 60_000;
    for (token, started, used, good) in [
        ("a1", now - 2 * minute, now - minute, true),
        ("a2", now - 40 * minute, now - 31 * minute, false),
        ("a3", now - 9 * 60 * minute, now - minute, false),
    ] {
        let id = switch::edge::console::session_id(token);
        let session = switch::store::console::ConsoleSession {
            user: "lan".into(),
            bank: None,
            started_ms: started,
            used_ms: used,
            password_set_at_ms: user.password_set_at_ms,
        };
        h.switch
            .store
            .begin_console_session(&id, &session, 1_000, |_| true)
            .unwrap();
        let mut browser = Client::new(&console);
        browser.cookie = Some(format!("switch_console={token}"));
        let r = browser.get("/overview").await;
        if good {
            assert_eq!(r.status, 200, "{token}");
        } else {
            assert_eq!(
                (r.status, r.header("location")),
                (303, Some("/login")),
                "{token}"
            );
            assert!(
                h.switch.store.console_session(&id).unwrap().is_none(),
                "{token} removed"
            );
        }
    }
}
