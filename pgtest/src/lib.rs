//! Throw-away PostgreSQL clusters for tests.
//!
//! The project's machines have Debian's `postgresql-15` installed but not
//! running (`.ci/run` installs it where it is missing). [`Cluster::start`]
//! makes a cluster in a temporary directory with `initdb`, starts it with
//! `pg_ctl` on a free loopback port, and stops it (and deletes it) on drop.
//! PostgreSQL refuses to run as root: as root, every step runs as the
//! `postgres` user, which owns the directory.
//!
//! `fsync` stays on: a test of durability must not be lied to.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where Debian puts the server's programs (`PG_BIN` overrides).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    for v in ["17", "16", "15"] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn is_root() -> bool {
    // `id -u`: no libc binding needed for one question.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A running cluster; stopped and deleted when dropped.
pub struct Cluster {
    /// Holds the data directory and the socket directory.
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
    bin: PathBuf,
    /// Where the server listens: loopback, or its address inside the
    /// network namespace it runs in ([`Placement`]).
    pub host: String,
    /// The network namespace the server (and every tool run as its user)
    /// runs in; `None`: the caller's.
    netns: Option<String>,
}

/// Where a cluster runs: on loopback in the caller's network namespace,
/// or in a namespace of its own (made by the caller, as root) listening on
/// `address` there and taking connections from `10.0.0.0/8` (partition
/// tests, issue #31).
#[derive(Clone, Debug, Default)]
pub enum Placement {
    #[default]
    Loopback,
    Netns {
        name: String,
        address: std::net::Ipv4Addr,
    },
}

fn placed(placement: &Placement) -> (String, Option<String>) {
    match placement {
        Placement::Loopback => ("127.0.0.1".to_string(), None),
        Placement::Netns { name, address } => (address.to_string(), Some(name.clone())),
    }
}

/// A free loopback port (the kernel's choice; the listener is closed
/// before the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Cluster {
    /// A new cluster with database `switch` (and `postgres`), trusting
    /// loopback connections, on a free port.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// The same, with extra `postgresql.conf` lines.
    pub fn start_with(settings: &[&str]) -> Cluster {
        Cluster::start_prepared(&Placement::Loopback, settings, |_| {})
    }

    /// A new cluster placed as `placement` says, with extra settings.
    pub fn start_at(placement: &Placement, settings: &[&str]) -> Cluster {
        Cluster::start_prepared(placement, settings, |c| {
            if c.netns.is_some() {
                c.trust_network();
            }
        })
    }

    /// A synchronous standby of this cluster (which becomes its primary's
    /// only synchronous standby, `standby`), placed as `placement` says:
    /// a base backup streamed from this server, then started; this
    /// server's commits wait for it from then on.
    pub fn standby_at(&self, placement: &Placement) -> Cluster {
        let bin = self.bin.clone();
        let dir = tempfile::Builder::new()
            .prefix("pgtest-standby-")
            .tempdir()
            .expect("a temporary directory");
        let (host, netns) = placed(placement);
        let s = Cluster {
            dir,
            port: free_port(),
            as_postgres: self.as_postgres,
            bin,
            host,
            netns,
        };
        if s.as_postgres {
            s.run_checked(
                "chown",
                &["-R", "postgres:postgres", &s.path_str("")],
                false,
            );
        }
        let data = s.path_str("data");
        let port = self.port.to_string();
        let conninfo = format!(
            "host={} port={} user=postgres application_name=standby",
            self.host, self.port
        );
        s.run_checked(
            &s.tool("pg_basebackup"),
            &[
                "-h", &self.host, "-p", &port, "-U", "postgres", "-D", &data, "-R", "-c", "fast",
                "-d", &conninfo,
            ],
            true,
        );
        s.configure(&[]);
        s.start_server();
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = 'standby'",
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        s
    }

    /// Take TCP connections (replication too) from every address of
    /// `10.0.0.0/8`: the partition tests' namespaces.
    fn trust_network(&self) {
        let hba = self.path("data/pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        text.push_str("\nhost all all 10.0.0.0/8 trust\nhost replication all 10.0.0.0/8 trust\n");
        std::fs::write(&hba, text).expect("pg_hba.conf written");
    }

    /// This standby becomes a primary.
    pub fn promote(&self) {
        let data = self.path_str("data");
        self.run_checked(&self.tool("pg_ctl"), &["-D", &data, "-w", "promote"], true);
    }

    /// The postmaster's pid, as its pid file names it.
    pub fn pid(&self) -> String {
        std::fs::read_to_string(self.path("data/postmaster.pid"))
            .expect("the pid file")
            .lines()
            .next()
            .expect("a pid")
            .trim()
            .to_string()
    }

    /// A cluster that takes TLS connections only, with `cert_pem` (the
    /// server's certificate chain) and `key_pem`: clear-text connections
    /// over TCP are rejected (`hostnossl … reject`).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Cluster {
        Cluster::start_prepared(
            &Placement::Loopback,
            &[
                "ssl = on",
                "ssl_cert_file = 'server.crt'",
                "ssl_key_file = 'server.key'",
            ],
            |c| {
                let data = c.path("data");
                std::fs::write(data.join("server.crt"), cert_pem).expect("server.crt");
                std::fs::write(data.join("server.key"), key_pem).expect("server.key");
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local all all trust\n\
                     hostssl all all 127.0.0.1/32 trust\n\
                     hostnossl all all 127.0.0.1/32 reject\n",
                )
                .expect("pg_hba.conf");
                // The server refuses a key others may read.
                let key = data.join("server.key").to_string_lossy().into_owned();
                c.run_checked("chmod", &["0600", &key], false);
                if c.as_postgres {
                    let data = data.to_string_lossy().into_owned();
                    c.run_checked("chown", &["-R", "postgres:postgres", &data], false);
                }
            },
        )
    }

    /// A new cluster: initdb, then `prepare` (files in the data directory),
    /// then start with `settings`.
    fn start_prepared(
        placement: &Placement,
        settings: &[&str],
        prepare: impl FnOnce(&Cluster),
    ) -> Cluster {
        let bin = bin_dir();
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL's server programs are not at {} (apt-get install postgresql-15, or set PG_BIN)",
            bin.display()
        );
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("pgtest-")
            .tempdir()
            .expect("a temporary directory");
        let (host, netns) = placed(placement);
        let mut c = Cluster {
            dir,
            port: free_port(),
            as_postgres,
            bin,
            host,
            netns,
        };
        if as_postgres {
            c.run_checked(
                "chown",
                &["-R", "postgres:postgres", &c.path_str("")],
                false,
            );
        }
        let data = c.path_str("data");
        c.run_checked(
            &c.tool("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-N",
            ],
            true,
        );
        prepare(&c);
        // A free port can be taken by someone else before the server
        // binds it: then try another (later lines of the file win).
        for attempt in 1.. {
            c.configure(settings);
            match c.try_start_server() {
                Ok(()) => break,
                Err(log) if attempt < 8 && log.contains("already in use") => {
                    c.port = free_port();
                }
                Err(log) => panic!("PostgreSQL did not start: {log}"),
            }
        }
        c.psql("postgres", "CREATE DATABASE switch");
        c
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.path().to_path_buf()
        } else {
            self.dir.path().join(rel)
        }
    }

    fn path_str(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    fn configure(&self, settings: &[&str]) {
        let mut conf = format!(
            "\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 200\nfsync = on\nsynchronous_commit = on\nshared_buffers = 128MB\nlog_min_messages = warning\n",
            self.host,
            self.port,
            self.path_str("")
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let file = self.path("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&file).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&file, text).expect("postgresql.conf written");
    }

    fn try_start_server(&self) -> Result<(), String> {
        let data = self.path_str("data");
        let log = self.path_str("server.log");
        let out = self.run(
            &self.tool("pg_ctl"),
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
            true,
        );
        if !out.status.success() {
            return Err(self.log());
        }
        self.wait_listening();
        Ok(())
    }

    fn start_server(&self) {
        if let Err(log) = self.try_start_server() {
            panic!("PostgreSQL did not start: {log}");
        }
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect((self.host.as_str(), self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server at once, as a crash would (`immediate`: no
    /// checkpoint; the next start recovers from the WAL).
    pub fn kill(&self) {
        let data = self.path_str("data");
        let _ = self.run(
            &self.tool("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
            true,
        );
    }

    /// Start it again after [`Cluster::kill`].
    pub fn restart(&self) {
        self.start_server();
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// A libpq-style connection string for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}:{}/{database}", self.host, self.port)
    }

    /// Run SQL with `psql` (setup, never the code under test).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            &self.tool("psql"),
            &[
                "-h",
                &self.host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            true,
        );
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn run(&self, program: &str, args: &[&str], as_server_user: bool) -> Output {
        let mut cmd = if as_server_user && self.as_postgres {
            let mut c = match &self.netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "runuser"]);
                    c
                }
                None => Command::new("runuser"),
            };
            c.args(["-u", "postgres", "--", program]);
            c
        } else if let (true, Some(ns)) = (as_server_user, &self.netns) {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn run_checked(&self, program: &str, args: &[&str], as_server_user: bool) {
        let out = self.run(program, args, as_server_user);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The directory the cluster lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary with a synchronous standby, made and driven by the project's
/// `ops/postgres/cluster.sh` (the script an operator tries it with), in
/// `dir`; stopped when dropped.
pub struct Replicated {
    dir: PathBuf,
    pub primary: u16,
    pub standby: u16,
}

impl Replicated {
    /// Start both on free ports (the standby synchronous).
    pub fn start(dir: &Path) -> Replicated {
        let (primary, standby) = (free_port(), free_port());
        let r = Replicated {
            dir: dir.to_path_buf(),
            primary,
            standby,
        };
        r.script(&["start", &primary.to_string(), &standby.to_string()]);
        r
    }

    /// The standby becomes the primary.
    pub fn promote(&self) {
        self.script(&["promote"]);
    }

    /// The primary's postmaster, as its pid file names it.
    pub fn primary_pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("primary/postmaster.pid"))
            .expect("the primary's pid file")
            .lines()
            .next()
            .expect("a pid")
            .trim()
            .to_string()
    }

    fn script(&self, args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/postgres/cluster.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .expect("cluster.sh runs");
        assert!(
            out.status.success(),
            "cluster.sh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/postgres/cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_and_survives_a_crash() {
        let c = Cluster::start();
        c.psql(
            "switch",
            "CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)",
        );
        assert_eq!(c.psql("switch", "SELECT sum(n) FROM t"), "42");
        c.kill();
        c.restart();
        assert_eq!(
            c.psql("switch", "SELECT sum(n) FROM t"),
            "42",
            "committed rows survive"
        );
    }
}
