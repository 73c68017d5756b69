//! What the partition tests build their network from (issue #31): Linux
//! network namespaces ([`Netns`]), each joined by a veth pair to one
//! bridged segment that the test's namespace is on too ([`Lan`]), faults
//! as nftables rules inside them (this kernel has no netem: a cut, one way or
//! both, and random loss with `numgen random`), and a TCP fault proxy for
//! delay. Every address is inside a namespace the test made; dropping a
//! [`Netns`] deletes it with its links.
//!
//! Needs root, `ip` and `nft` (Debian's `nftables`; `.ci/run` installs
//! it). A test that cannot build its network fails with the reason.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::settlement_client::SettlementClient;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tonic::transport::Channel;

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

/// A network namespace on a [`Lan`]: the test reaches it at `inside`, it
/// reaches the test at `host`.
pub struct Netns {
    pub name: String,
    pub host: Ipv4Addr,
    pub inside: Ipv4Addr,
}

/// The next namespace's number in this process, and its name.
fn slot() -> Result<(u32, String), String> {
    let n = MADE.fetch_add(1, Ordering::SeqCst);
    if n >= 60 {
        return Err("a test process makes at most 60 namespaces".into());
    }
    Ok((n, format!("psw{}n{n}", std::process::id())))
}

/// A namespace called `name`, its loopback up.
fn add_namespace(name: &str) -> Result<(), String> {
    run("ip", &["netns", "add", name])?;
    run(
        "ip",
        &["netns", "exec", name, "ip", "link", "set", "lo", "up"],
    )
}

/// `ip` run in namespace `name`.
fn ip_in(name: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", name, "ip"];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl Netns {
    /// The table every fault rule goes in, with a chain each way.
    fn faults(&self) -> Result<(), String> {
        self.nft(
            "add table inet fault
             add chain inet fault input { type filter hook input priority 0; }
             add chain inet fault output { type filter hook output priority 0; }",
        )
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

/// One network segment (a bridge in a namespace of its own) that the test's
/// namespace and every [`Lan::member`] join, each with an address of its
/// own on one /24: members reach each other directly (no routing through
/// the test's namespace, which forwards nothing), so a rule in one
/// member's namespace cuts exactly that member's links, and a server
/// there sees a peer that went silent as the peer's own host would.
pub struct Lan {
    /// The namespace holding the bridge.
    name: String,
    /// The /24's first three octets.
    prefix: [u8; 3],
    /// The test's own address on the segment.
    pub host: Ipv4Addr,
    /// Members made so far (their addresses are .2 on).
    members: AtomicU32,
}

impl Lan {
    /// A segment with the test's namespace on it, or why not.
    pub fn new() -> Result<Lan, String> {
        let pid = std::process::id();
        let (n, name) = slot()?;
        // 10.(150 + pid % 50).n.0/24: apart from other test processes'
        // segments.
        let prefix = [10, 150 + (pid % 50) as u8, n as u8];
        let host = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 1);
        add_namespace(&name)?;
        let lan = Lan {
            name,
            prefix,
            host,
            members: AtomicU32::new(0),
        };
        ip_in(&lan.name, &["link", "add", "br0", "type", "bridge"])?;
        ip_in(&lan.name, &["link", "set", "br0", "up"])?;
        let here = lan.plug(n, 'r')?;
        run("ip", &["addr", "add", &format!("{host}/24"), "dev", &here])?;
        run("ip", &["link", "set", &here, "up"])?;
        Ok(lan)
    }

    /// A veth pair, one end on the bridge (up), the other left in the
    /// test's namespace for the caller to place (its name answered).
    fn plug(&self, n: u32, what: char) -> Result<String, String> {
        let id = std::process::id() % 100_000;
        let (here, there) = (format!("pl{id}{what}{n}"), format!("pb{id}{what}{n}"));
        run(
            "ip",
            &["link", "add", &here, "type", "veth", "peer", "name", &there],
        )?;
        run("ip", &["link", "set", &there, "netns", &self.name])?;
        ip_in(&self.name, &["link", "set", &there, "master", "br0"])?;
        ip_in(&self.name, &["link", "set", &there, "up"])?;
        Ok(here)
    }

    /// A namespace of its own on the segment: `inside` is its address,
    /// `host` the test's.
    pub fn member(&self) -> Result<Netns, String> {
        let (n, name) = slot()?;
        let k = self.members.fetch_add(1, Ordering::SeqCst);
        if k >= 200 {
            return Err("a segment has at most 200 members".into());
        }
        let [a, b, c] = self.prefix;
        let inside = Ipv4Addr::new(a, b, c, 2 + k as u8);
        add_namespace(&name)?;
        let ns = Netns {
            name,
            host: self.host,
            inside,
        };
        let here = self.plug(n, 'm')?;
        run("ip", &["link", "set", &here, "netns", &ns.name])?;
        ip_in(
            &ns.name,
            &["addr", "add", &format!("{inside}/24"), "dev", &here],
        )?;
        ip_in(&ns.name, &["link", "set", &here, "up"])?;
        ns.faults()?;
        Ok(ns)
    }

    /// Where a member of the segment is placed for [`pgtest::Cluster`].
    pub fn placement(ns: &Netns) -> pgtest::Placement {
        pgtest::Placement::Netns {
            name: ns.name.clone(),
            address: ns.inside,
        }
    }
}

/// A segment with `N` members, or the test fails saying why it cannot
/// make its network (never skipped).
pub fn segment<const N: usize>() -> (Lan, [Netns; N]) {
    fn network<T>(e: String) -> T {
        panic!("cannot make the test's network: {e}")
    }
    let lan = Lan::new().unwrap_or_else(network);
    let members = std::array::from_fn(|_| lan.member().unwrap_or_else(network));
    (lan, members)
}

impl Drop for Lan {
    fn drop(&mut self) {
        // The bridge's ends go with it, and each pair with its end.
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A TCP proxy whose answers (upstream to client) can be held back by a
/// delay, for answers that come back late (cuts and loss are nftables
/// rules: [`Netns`]).
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub async fn start(listen: std::net::SocketAddr, upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("address");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (delay, stopped) = (delay_ms.clone(), stop.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let delay = delay.clone();
                tokio::spawn(async move {
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
            stop,
        }
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

/// Close the open settlement window as `op`: refused unless its nets sum
/// to zero.
pub async fn close_the_window(ch: &Channel, op: &Credentials) {
    let mut settlement = SettlementClient::new(ch.clone());
    let open = settlement
        .list_windows(op.sign(
            "/paymentswitch.v1.Settlement/ListWindows",
            pb::ListWindowsRequest {},
        ))
        .await
        .unwrap()
        .into_inner()
        .windows
        .last()
        .unwrap()
        .window_id;
    settlement
        .close_window(op.sign(
            "/paymentswitch.v1.Settlement/CloseWindow",
            pb::CloseWindowRequest { window_id: open },
        ))
        .await
        .expect("the window closes: its nets sum to zero");
}
