//! The operations console in tests: served beside a harness's switch on a
//! free loopback port, console users made over the Admin API, and a small
//! HTTP/1.1 client that keeps a session's cookie (what a browser does,
//! without one).

use proto::v1 as pb;

use crate::Harness;

/// A console served for a harness's switch until dropped.
pub struct Console {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Console {
    pub async fn start(h: &Harness, secure_cookies: bool) -> Console {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(switch::edge::console::serve(
            listener,
            h.switch.clone(),
            None,
            secure_cookies,
            async {
                let _ = stopped.await;
            },
        ));
        Console {
            addr,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A console user made over the Admin API: answers the password.
pub async fn console_user(h: &Harness, name: &str, role: &str, bank: &str) -> String {
    let operator = h.credentials("operator");
    h.admin()
        .create_console_user(operator.sign(
            "/paymentswitch.v1.Admin/CreateConsoleUser",
            pb::CreateConsoleUserRequest {
                name: name.into(),
                role: role.into(),
                bank_bin: bank.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .password
}

/// One answer: status, headers (names lower-case), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first CSRF token a page's forms carry.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with its CSRF token");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A browser-less client: keeps the session cookie between calls.
pub struct Client {
    addr: std::net::SocketAddr,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(console: &Console) -> Client {
        Client {
            addr: console.addr,
            cookie: None,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send("POST", path, Some(body)).await
    }

    /// Sign in: answers the sign-in's answer.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> Answer {
        self.post("/login", &[("name", name), ("password", password)])
            .await
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<String>) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let Some(b) = &body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.as_deref().unwrap_or(""));
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        if let Some((_, set)) = headers.iter().find(|(k, _)| k == "set-cookie") {
            let pair = set.split(';').next().unwrap_or("").to_string();
            self.cookie = pair
                .split_once('=')
                .filter(|(_, v)| !v.is_empty())
                .map(|_| pair.clone());
        }
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
