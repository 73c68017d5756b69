//! `pos-agent desk`: a commune one-stop desk's fee screen and the kiosk
//! the citizen faces (issue #30).
//!
//! The clerk enters a dossier's code and the items with their quantities;
//! the switch prices them and answers a dynamic VietQR, which the kiosk
//! view (`/kiosk`, a second screen turned to the citizen, no input) shows
//! with the items and the total until it turns to "Đã thanh toán". The
//! desk hears of the payment live (`WatchPayments`) and prints the fee
//! receipt on the desk's thermal printer, keeping its bytes in `printed/`.
//! Served on loopback; the profile's secret stays in this process.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::merchant_client::MerchantClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::client::{Failure, Profile};
use crate::receipt::{self, Paper, escpos::Target, vnd};

/// Requests the desk remembers (the kiosk shows the latest).
const REQUESTS_MAX: usize = 256;

pub struct Config {
    pub profile: Profile,
    /// `printed/` holds the printer's bytes of every receipt.
    pub state_dir: PathBuf,
    pub printer: Option<Target>,
    pub paper: Paper,
    /// How long a request's code can be paid; 0: the switch's default.
    pub expires_in_s: u32,
}

struct App {
    config: Config,
    credentials: Credentials,
    channel: Channel,
    catalogue: Mutex<Option<pb::FeeCatalogue>>,
    /// Requests by QR id, as last read.
    requests: Mutex<HashMap<String, pb::FeeRequest>>,
    /// The request the kiosk shows.
    current: Mutex<Option<String>>,
    /// Receipts printed, by QR id: each once.
    printed: Mutex<HashSet<String>>,
    /// Sent in every form: a page from elsewhere cannot post here.
    csrf: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    hex::encode(b)
}

type Fields = Vec<(String, String)>;

fn field<'a>(f: &'a Fields, k: &str) -> &'a str {
    f.iter()
        .find(|(x, _)| x == k)
        .map_or("", |(_, v)| v.as_str())
}

const STYLE: &str = r#"
body{margin:0;font:18px/1.4 "DejaVu Sans",Arial,sans-serif;background:#f3f5f7;color:#1b1f23}
header{background:#8a1c1c;color:#fff;padding:8px 16px;font-weight:bold}
main{background:#fff;margin:14px;padding:16px 20px;border-radius:6px;max-width:1300px}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
input{font:inherit;padding:5px 8px}input.q{width:70px}
button{font:inherit;padding:8px 18px;margin-top:12px;border:0;border-radius:4px;background:#8a1c1c;color:#fff}
.paid{font-size:40px;color:#2e7d32;font-weight:bold}.total{font-size:28px;font-weight:bold}
.refusal{background:#fdecea;border-left:6px solid #b02a37;padding:10px 14px}.note{font-size:12px;color:#555;word-break:break-all}
.kiosk{text-align:center;font-size:26px}
"#;

fn page(title: &str, refresh_s: Option<u32>, body: Markup) -> Response {
    Html(
        html! {
            (DOCTYPE)
            html lang="vi" {
                head {
                    meta charset="utf-8";
                    title { (title) }
                    style { (PreEscaped(STYLE)) }
                    @if let Some(s) = refresh_s { meta http-equiv="refresh" content=(s); }
                }
                body { header { (title) } main { (body) } }
            }
        }
        .into_string(),
    )
    .into_response()
}

impl App {
    fn client(&self) -> MerchantClient<Channel> {
        MerchantClient::new(self.channel.clone())
    }

    async fn catalogue(&self) -> Result<pb::FeeCatalogue, Failure> {
        if let Some(c) = lock(&self.catalogue).clone() {
            return Ok(c);
        }
        let c = self
            .client()
            .get_fee_catalogue(self.credentials.sign(
                "/paymentswitch.v1.Merchant/GetFeeCatalogue",
                pb::GetFeeCatalogueRequest {},
            ))
            .await
            .map_err(Failure::from)?
            .into_inner();
        *lock(&self.catalogue) = Some(c.clone());
        Ok(c)
    }

    async fn read(&self, qr_id: &str) -> Result<pb::FeeRequest, Failure> {
        let r = self
            .client()
            .get_fee_request(self.credentials.sign(
                "/paymentswitch.v1.Merchant/GetFeeRequest",
                pb::GetFeeRequestRequest {
                    qr_id: qr_id.to_string(),
                },
            ))
            .await
            .map_err(Failure::from)?
            .into_inner();
        self.keep(&r);
        Ok(r)
    }

    fn keep(&self, r: &pb::FeeRequest) {
        let Some(qr) = &r.qr else { return };
        let mut all = lock(&self.requests);
        if all.len() >= REQUESTS_MAX && !all.contains_key(&qr.qr_id) {
            all.retain(|_, x| x.transaction_id.is_empty());
        }
        all.insert(qr.qr_id.clone(), r.clone());
    }

    /// Print the fee receipt of a paid request, once; the printer's bytes
    /// are kept in `printed/`.
    async fn print(&self, r: &pb::FeeRequest) -> Result<(), String> {
        let qr_id = r.qr.as_ref().map(|q| q.qr_id.clone()).unwrap_or_default();
        if r.transaction_id.is_empty() || !lock(&self.printed).insert(qr_id.clone()) {
            return Ok(());
        }
        let receipt = receipt::Receipt::fee(r);
        let (paper, target) = (self.config.paper, self.config.printer.clone());
        let path = self
            .config
            .state_dir
            .join("printed")
            .join(format!("{qr_id}.escpos"));
        let result = tokio::task::spawn_blocking(move || {
            receipt::escpos::print_kept(&receipt, paper, &path, target.as_ref())
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Err(e) = &result {
            tracing::warn!(qr_id, error = %e, "desk: fee receipt not printed");
        }
        result
    }
}

/// Serve the desk on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    if config.profile.role != "merchant" {
        return Err(format!(
            "this is a {} profile; a desk needs its collector's (a merchant's)",
            config.profile.role
        ));
    }
    std::fs::create_dir_all(config.state_dir.join("printed"))
        .map_err(|e| format!("{}: {e}", config.state_dir.display()))?;
    let credentials = config.profile.credentials()?;
    let channel = config.profile.connect_lazy(2_000, 30_000)?;
    let app = Arc::new(App {
        config,
        credentials,
        channel,
        catalogue: Mutex::default(),
        requests: Mutex::default(),
        current: Mutex::default(),
        printed: Mutex::default(),
        csrf: token(),
    });
    let watcher = tokio::spawn(watch(app.clone()));
    let router = Router::new()
        .route("/", get(desk_page))
        .route("/request", post(create))
        .route("/request/{qr_id}", get(request_page))
        .route("/request/{qr_id}/receipt.pdf", get(receipt_pdf))
        .route("/kiosk", get(kiosk_page))
        .route("/api/kiosk", get(kiosk_fragment))
        .with_state(app);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string());
    watcher.abort();
    served
}

/// Hear of payments as they happen; print each paid request's receipt.
async fn watch(app: Arc<App>) {
    let mut after = 0u64;
    loop {
        let stream = app
            .client()
            .watch_payments(app.credentials.sign(
                "/paymentswitch.v1.Merchant/WatchPayments",
                pb::WatchPaymentsRequest { after_seq: after },
            ))
            .await;
        if let Ok(stream) = stream {
            let mut stream = stream.into_inner();
            while let Ok(Some(n)) = stream.message().await {
                after = n.seq;
                let known = lock(&app.requests).contains_key(&n.qr_id);
                if known && let Ok(r) = app.read(&n.qr_id).await {
                    let _ = app.print(&r).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn desk_page(State(app): State<Arc<App>>) -> Response {
    let body = match app.catalogue().await {
        Ok(c) => html! {
            h2 { "Thu phí, lệ phí: " (c.collector_name) }
            form method="post" action="/request" {
                input type="hidden" name="csrf" value=(app.csrf);
                input type="hidden" name="request_id" value=(format!("desk-{}", token()));
                label for="dossier" { "Mã hồ sơ " }
                input #dossier name="dossier" autofocus autocomplete="off";
                table #catalogue {
                    tr { th { "Mục" } th { "Đơn giá" } th { "Đơn vị" } th { "Số lượng" } th { "Căn cứ" } }
                    @for i in &c.items {
                        tr {
                            td { (i.name) }
                            td { (vnd(i.unit_price)) }
                            td { (i.unit) }
                            td { input.q id=(format!("q-{}", i.code)) name=(format!("q-{}", i.code)) inputmode="numeric"; }
                            td.note { (i.legal_basis) }
                        }
                    }
                }
                button #create type="submit" { "Tạo mã thanh toán" }
            }
        },
        Err(f) => {
            html! { div.refusal #refusal { "Không đọc được danh mục phí: " (f.code) " — " (f.message) } }
        }
    };
    page("Bộ phận một cửa", None, body)
}

async fn create(State(app): State<Arc<App>>, Form(f): Form<Fields>) -> Response {
    if field(&f, "csrf") != app.csrf {
        return (StatusCode::FORBIDDEN, "Trang đã cũ. Vui lòng thử lại.").into_response();
    }
    let lines: Vec<pb::FeeLineRequest> = f
        .iter()
        .filter_map(|(k, v)| {
            let code = k.strip_prefix("q-")?;
            let quantity = v.trim().parse::<u32>().ok().filter(|q| *q > 0)?;
            Some(pb::FeeLineRequest {
                code: code.to_string(),
                quantity,
            })
        })
        .collect();
    let req = pb::CreateFeeRequestRequest {
        client_request_id: field(&f, "request_id").to_string(),
        dossier_code: field(&f, "dossier").trim().to_string(),
        lines,
        expires_in_s: app.config.expires_in_s,
    };
    let answer = app
        .client()
        .create_fee_request(
            app.credentials
                .sign("/paymentswitch.v1.Merchant/CreateFeeRequest", req),
        )
        .await;
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            app.keep(&r);
            let qr_id = r.qr.as_ref().map(|q| q.qr_id.clone()).unwrap_or_default();
            *lock(&app.current) = Some(qr_id.clone());
            Redirect::to(&format!("/request/{qr_id}")).into_response()
        }
        Err(s) => {
            let f = Failure::from(s);
            page(
                "Bộ phận một cửa",
                None,
                html! {
                    div.refusal #refusal { "Không tạo được mã thanh toán: " (f.message) " (" (f.code) ")" }
                    a href="/" autofocus { "Quay lại" }
                },
            )
        }
    }
}

fn lines_table(r: &pb::FeeRequest) -> Markup {
    html! {
        table #lines {
            tr { th { "Mục" } th { "Số lượng" } th { "Đơn giá" } th { "Thành tiền" } }
            @for l in &r.lines {
                tr { td { (l.name) } td { (l.quantity) " " (l.unit) } td { (vnd(l.unit_price)) } td { (vnd(l.amount)) } }
            }
        }
        p.total { "Tổng cộng: " span #total { (vnd(r.total)) } }
        p { "(" (receipt::words::vnd_in_words(r.total)) ")" }
    }
}

async fn request_page(State(app): State<Arc<App>>, Path(qr_id): Path<String>) -> Response {
    let r = match app.read(&qr_id).await {
        Ok(r) => r,
        Err(f) => {
            return page(
                "Bộ phận một cửa",
                None,
                html! { div.refusal #refusal { (f.code) " — " (f.message) } },
            );
        }
    };
    let paid = !r.transaction_id.is_empty();
    let printed = if paid {
        Some(app.print(&r).await)
    } else {
        None
    };
    let payload = r.qr.as_ref().map(|q| q.payload.clone()).unwrap_or_default();
    let body = html! {
        h2 { "Hồ sơ " span #dossier-code { (r.dossier_code) } }
        (lines_table(&r))
        @if paid {
            p.paid #paid { "Đã thanh toán" }
            p { "Mã giao dịch: " span #tx-id { (r.transaction_id) } }
            @match printed {
                Some(Ok(())) => p #printed { "Đã in biên lai thu phí, lệ phí." },
                Some(Err(e)) => div.refusal #print-error { "Chưa in được biên lai: " (e) },
                None => {},
            }
            a #next href="/" autofocus { "Hồ sơ tiếp theo" }
            " · "
            a #pdf href=(format!("/request/{qr_id}/receipt.pdf")) { "Biên lai (PDF)" }
        } @else {
            p #waiting { "Mời công dân quét mã trên màn hình kiosk bằng ứng dụng ngân hàng." }
            p.note #qr-payload { (payload) }
        }
    };
    page("Bộ phận một cửa", (!paid).then_some(1), body)
}

/// The fee receipt as PDF, for a reprint or the dossier's file.
async fn receipt_pdf(State(app): State<Arc<App>>, Path(qr_id): Path<String>) -> Response {
    match app.read(&qr_id).await {
        Ok(r) if !r.transaction_id.is_empty() => {
            let raster = receipt::render::render(&receipt::Receipt::fee(&r), app.config.paper);
            (
                [(axum::http::header::CONTENT_TYPE, "application/pdf")],
                receipt::pdf::pdf(&raster),
            )
                .into_response()
        }
        Ok(_) => (StatusCode::CONFLICT, "Chưa thanh toán: chưa có biên lai.").into_response(),
        Err(f) => (StatusCode::NOT_FOUND, format!("{}: {}", f.code, f.message)).into_response(),
    }
}

fn qr_svg(payload: &str) -> String {
    qrcode::QrCode::new(payload.as_bytes()).map_or(String::new(), |code| {
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(360, 360)
            .build()
    })
}

fn kiosk_view(r: Option<&pb::FeeRequest>) -> Markup {
    html! {
        @match r {
            None => { h1 #kiosk-idle { "Xin chào quý khách" } }
            Some(r) if !r.transaction_id.is_empty() => {
                p.paid #kiosk-paid { "Đã thanh toán" }
                p { "Hồ sơ " (r.dossier_code) " · " (vnd(r.total)) }
                p { "Cảm ơn quý khách!" }
            }
            Some(r) => {
                h1 { "Quét mã để nộp phí, lệ phí" }
                div #kiosk-qr { (PreEscaped(qr_svg(r.qr.as_ref().map_or("", |q| q.payload.as_str())))) }
                p { "Hồ sơ " (r.dossier_code) " · " (r.collector_name) }
                (lines_table(r))
            }
        }
    }
}

async fn current(app: &App) -> Option<pb::FeeRequest> {
    let qr_id = lock(&app.current).clone()?;
    let known = lock(&app.requests).get(&qr_id).cloned();
    match known {
        // Unpaid: read again (the watcher may not have heard yet).
        Some(r) if r.transaction_id.is_empty() => app.read(&qr_id).await.ok().or(Some(r)),
        other => other,
    }
}

async fn kiosk_page(State(app): State<Arc<App>>) -> Response {
    let r = current(&app).await;
    Html(
        html! {
            (DOCTYPE)
            html lang="vi" {
                head { meta charset="utf-8"; title { "Kiosk thanh toán" } style { (PreEscaped(STYLE)) } }
                body.kiosk {
                    div #kiosk { (kiosk_view(r.as_ref())) }
                    script { (PreEscaped("setInterval(function(){fetch('/api/kiosk').then(function(r){return r.text()}).then(function(h){document.getElementById('kiosk').innerHTML=h})},1000)")) }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

async fn kiosk_fragment(State(app): State<Arc<App>>) -> Response {
    let r = current(&app).await;
    Html(kiosk_view(r.as_ref()).into_string()).into_response()
}
