//! What the partition tests build their network from (issue #31): Linux
//! network namespaces joined to the test's own by veth pairs, faults as
//! nftables rules inside them (this kernel has no netem: a cut, one way or
//! both, and random loss with `numgen random`), and a TCP fault proxy for
//! delay. Every address is inside a namespace the test made; dropping a
//! [`Netns`] deletes it with its links.
//!
//! Needs root, `ip` and `nft` (Debian's `nftables`; `.ci/run` installs
//! it). A test that cannot build its network fails with the reason.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Namespaces made by this process (each gets a /30 of its own).
static MADE: AtomicU32 = AtomicU32::new(0);

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A network namespace joined to the test's by a veth pair: the test
/// reaches it at `inside`, it reaches the test at `host`.
pub struct Netns {
    pub name: String,
    pub host: Ipv4Addr,
    pub inside: Ipv4Addr,
}

impl Netns {
    /// A namespace of its own, or why not (not root, no `ip`, no `nft`).
    pub fn new() -> Result<Netns, String> {
        let pid = std::process::id();
        let n = MADE.fetch_add(1, Ordering::SeqCst);
        if n >= 60 {
            return Err("a test process makes at most 60 namespaces".into());
        }
        // 10.(200 + pid % 50).(n * 4).0/30: apart from other test
        // processes' (by pid) and this one's (by n).
        let (b, c) = (200 + (pid % 50) as u8, (n * 4) as u8);
        let host = Ipv4Addr::new(10, b, c, 1);
        let inside = Ipv4Addr::new(10, b, c, 2);
        let name = format!("psw{pid}n{n}");
        let (vh, vn) = (
            format!("pw{}h{n}", pid % 100_000),
            format!("pw{}n{n}", pid % 100_000),
        );
        let ns = Netns {
            name: name.clone(),
            host,
            inside,
        };
        run("ip", &["netns", "add", &name])?;
        run(
            "ip",
            &["link", "add", &vh, "type", "veth", "peer", "name", &vn],
        )?;
        run("ip", &["link", "set", &vn, "netns", &name])?;
        run("ip", &["addr", "add", &format!("{host}/30"), "dev", &vh])?;
        run("ip", &["link", "set", &vh, "up"])?;
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        exec(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &vn])?;
        exec(&["ip", "link", "set", &vn, "up"])?;
        exec(&["ip", "link", "set", "lo", "up"])?;
        ns.nft(
            "add table inet fault
             add chain inet fault input { type filter hook input priority 0; }
             add chain inet fault output { type filter hook output priority 0; }",
        )?;
        Ok(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Apply an nftables script inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// Nothing in or out but loopback.
    pub fn cut(&self) {
        self.nft(
            r#"add rule inet fault input iifname != "lo" drop
               add rule inet fault output oifname != "lo" drop"#,
        )
        .expect("cut");
    }

    /// What this namespace sends is lost; what it receives arrives: a
    /// peer's requests are served and their answers never come back.
    pub fn lose_answers(&self) {
        self.nft(r#"add rule inet fault output oifname != "lo" drop"#)
            .expect("one-way cut");
    }

    /// Lose `percent` of the packets each way.
    pub fn lose(&self, percent: u8) {
        self.nft(&format!(
            r#"add rule inet fault input iifname != "lo" numgen random mod 100 < {percent} drop
               add rule inet fault output oifname != "lo" numgen random mod 100 < {percent} drop"#
        ))
        .expect("loss");
    }

    /// Every fault taken away.
    pub fn heal(&self) {
        self.nft("flush chain inet fault input\nflush chain inet fault output")
            .expect("heal");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A TCP proxy whose answers (upstream to client) can be held back by a
/// delay, for answers that come back late, or whose every byte both ways
/// can be held while it is cut (the connections stay open, silent, as
/// over a link that lost its route).
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// Wait while `cut` holds.
async fn held(cut: &AtomicBool) {
    while cut.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl FaultProxy {
    pub async fn start(listen: std::net::SocketAddr, upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("address");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (delay, stopped, cut_now) = (delay_ms.clone(), stop.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let (delay, cut_up, cut_down) = (delay.clone(), cut_now.clone(), cut_now.clone());
                tokio::spawn(async move {
                    held(&cut_up).await;
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            held(&cut_up).await;
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        held(&cut_down).await;
                        let ms = delay.load(Ordering::SeqCst);
                        if ms > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        FaultProxy {
            addr,
            delay_ms,
            cut,
            stop,
        }
    }

    /// Hold every byte both ways (true) or pass them on again (false).
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Hold every answer back this long (0: none).
    pub fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
