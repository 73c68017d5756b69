//! What the counter's browser tests share: chromedriver, Chromium at the
//! counter's screen size, keys, waits, screenshots, and the receipts the
//! counter printed.

#![allow(dead_code)]

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use pos_agent::receipt::escpos;

/// chromedriver on a free port, stopped when dropped.
pub struct Driver(pub std::process::Child, pub u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn driver() -> Driver {
    let port = free_port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
    Driver(child, port)
}

/// A browser window at the counter's screen size, 1366×768.
pub async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1366,768", "--lang=vi"],
        }),
    );
    let url = format!("http://127.0.0.1:{}", d.1);
    for _ in 0..100 {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        if let Ok(c) = b.connect(&url).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a session");
}

pub fn screenshots() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/counter-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Type into the field `css` (keys only: the field is where the cursor is
/// after a Tab or on a page's load).
pub async fn typed(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(keys)
        .await
        .unwrap();
}

/// Press a key where the focus is.
pub async fn press(c: &Client, key: Key) {
    let active = c.active_element().await.unwrap();
    active
        .send_keys(&String::from(char::from(key)))
        .await
        .unwrap();
}

pub async fn wait_for(c: &Client, css: &str) -> String {
    // The page may change between finding the element and reading it (a
    // redirect after a post): look again until it holds still.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            return text;
        }
        if std::time::Instant::now() > deadline {
            let page = c.source().await.unwrap_or_default();
            panic!("waiting for {css}; page: {page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `css` once it is `want` (a page that polls gets there).
pub async fn wait_for_text(c: &Client, css: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = wait_for(c, css).await;
        if text == want || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The id of the transaction the page shows.
pub async fn tx_id(c: &Client) -> String {
    wait_for(c, "#tx-id").await
}

pub fn printed(state: &std::path::Path) -> Vec<(String, escpos::Printed)> {
    let mut files: Vec<_> = std::fs::read_dir(state.join("printed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let read = escpos::read(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, read)
        })
        .collect()
}

/// Wait until the browser is at `path`.
pub async fn at(c: &Client, base: &str, path: &str) {
    let want = url::Url::parse(&format!("{base}{path}")).unwrap();
    if let Err(e) = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_url(&want)
        .await
    {
        let now = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        panic!("waiting to be at {path}: {e}; at {now}");
    }
}

/// Sign in at the counter at `base`, keyboard only, and wait for the
/// screen that follows.
pub async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    typed(c, "#name", name).await;
    typed(
        c,
        "#password",
        &format!("{password}{}", char::from(Key::Enter)),
    )
    .await;
    wait_for(c, "#who").await;
}

/// Type `text` into the field `css` and press Enter: a form sent.
pub async fn entered(c: &Client, css: &str, text: &str) {
    typed(c, css, &format!("{text}{}", char::from(Key::Enter))).await;
}

/// Find bills at the counter: F4, the biller by its code, the customer.
pub async fn bills_of(c: &Client, base: &str, biller: &str, customer: &str) {
    press(c, Key::F4).await;
    at(c, base, "/bills").await;
    typed(c, "#biller", biller).await;
    entered(c, "#customer", customer).await;
}
