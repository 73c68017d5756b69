//! How the switch reaches PostgreSQL: a connection string as libpq reads
//! it (`host=… port=… dbname=…`, or `postgres://…?…`), and TLS that
//! verifies the server.
//!
//! `sslmode=verify-full sslrootcert=CA.pem` (the names psql knows) makes
//! every connection TLS, the server's certificate checked against that CA
//! and its name against the host dialled (an IP address against the
//! certificate's IP addresses); a server that does not offer TLS is
//! refused. `verify-ca` and `require` are held to the same: a link to the
//! database that holds the ledger is verified or not made. Without an
//! `sslmode` (or `disable`, `allow`, `prefer`) the link is clear text, as
//! before, which only a database on the same host or a private link
//! should get. TLS is rustls with ring, as everywhere in the switch.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;

/// How long connecting to PostgreSQL may take, unless the connection
/// string says (`connect_timeout`).
pub const PG_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long data sent to PostgreSQL may stay unacknowledged before the
/// connection is dropped (`tcp_user_timeout`): a partitioned link fails
/// within this.
pub const PG_TCP_USER_TIMEOUT_MS: u64 = 10_000;

/// The connector every PostgreSQL connection of the switch is made with.
pub type Tls = MakeRustlsConnect;

/// A parsed connection string: the client's configuration and the TLS
/// connector to use with it.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), String> {
    let (rest, ssl) = take_ssl_params(url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| format!("the PostgreSQL connection string: {e}"))?;
    // A link that goes silent (a partition, not a refused connection) must
    // fail a connection within seconds, not the kernel's quarter of an
    // hour of retransmissions: callers are then refused promptly and the
    // connection is made again once the link is back (issue #31). The
    // connection string may say otherwise.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_millis(PG_CONNECT_TIMEOUT_MS));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_millis(PG_TCP_USER_TIMEOUT_MS));
    }
    // The server's side of the same: a session whose node went silent
    // ends within seconds, and with it the advisory locks it held (the
    // worker lease, turns), instead of the server's default of two hours
    // of keepalive idleness. Settings the connection string gives win.
    //
    // And every statement planned for its parameters, at every execution.
    // The switch prepares its statements once per connection, when its
    // tables may still be empty; after five executions PostgreSQL may keep
    // a generic plan made for that size (a sequential scan of a table of a
    // few rows), which grows slower with every row: a node fell from 350 to
    // 110 flows/s over 40 s that way, its ledger batches from 29 to 110 ms
    // (BENCHMARKS.md, session 10). Planning each time costs far less.
    let mut options = config.get_options().unwrap_or_default().to_string();
    for (setting, value) in [
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
        ("tcp_user_timeout", "10000"),
        ("plan_cache_mode", "force_custom_plan"),
    ] {
        if !options.contains(setting) {
            options.push_str(&format!(" -c {setting}={value}"));
        }
    }
    config.options(options.trim());
    if config.get_keepalives_interval().is_none() {
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
    }
    let verify = match ssl.mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => return Err(format!("sslmode {other:?} is not one libpq knows")),
    };
    let mut roots = rustls::RootCertStore::empty();
    if verify {
        let Some(ca) = &ssl.root_cert else {
            return Err(
                "sslmode asks for TLS: give sslrootcert=FILE, the CA (PEM) that issued the server's certificate"
                    .to_string(),
            );
        };
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert {ca}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {ca}: no certificate in it"));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("sslrootcert {ca}: {e}"))?;
        }
        config.ssl_mode(SslMode::Require);
    } else {
        if ssl.root_cert.is_some() {
            return Err(
                "sslrootcert is given but sslmode does not ask for TLS: say sslmode=verify-full"
                    .to_string(),
            );
        }
        config.ssl_mode(SslMode::Disable);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// What went wrong, for a person: the server's message and code, or the
/// whole chain of causes (a TLS handshake's reason is in a source, not
/// in the error's own text).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return format!("{} ({})", d.message(), d.code().code());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The two parameters tokio-postgres does not take as libpq does.
#[derive(Debug, Default, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// `url` without `sslmode` and `sslrootcert`, and their values.
fn take_ssl_params(url: &str) -> Result<(String, SslParams), String> {
    let mut ssl = SslParams::default();
    let mut keep = |key: &str, value: String| -> bool {
        match key {
            "sslmode" => ssl.mode = Some(value),
            "sslrootcert" => ssl.root_cert = Some(value),
            _ => return true,
        }
        false
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), ssl));
        };
        let rest: Vec<&str> = query
            .split('&')
            .filter(|p| match p.split_once('=') {
                Some((k, v)) => keep(k, percent_decode(v)),
                None => true,
            })
            .collect();
        let out = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        return Ok((out, ssl));
    }
    // Key-value form: `key=value` pairs apart by spaces, a value quoted
    // with '…' where it holds spaces (\' and \\ inside).
    let mut out = Vec::new();
    let mut chars = url.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "the PostgreSQL connection string: {key:?} has no value"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut raw = String::new();
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            raw.push('\'');
            loop {
                match chars.next() {
                    Some('\\') => {
                        let c = chars
                            .next()
                            .ok_or("the PostgreSQL connection string ends in \\")?;
                        raw.push('\\');
                        raw.push(c);
                        value.push(c);
                    }
                    Some('\'') => {
                        raw.push('\'');
                        break;
                    }
                    Some(c) => {
                        raw.push(c);
                        value.push(c);
                    }
                    None => {
                        return Err(
                            "the PostgreSQL connection string has an unclosed quote".to_string()
                        );
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                raw.push(c);
                value.push(c);
            }
        }
        if keep(&key, value) {
            out.push(format!("{key}={raw}"));
        }
    }
    Ok((out.join(" "), ssl))
}

/// `%XX` escapes in a URI's query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_plans_for_its_parameters_and_fails_fast_unless_the_string_says_otherwise() {
        let (config, _) = parse("host=db user=postgres dbname=switch").unwrap();
        let options = config.get_options().unwrap();
        for setting in [
            "-c plan_cache_mode=force_custom_plan",
            "-c tcp_keepalives_idle=5",
            "-c tcp_user_timeout=10000",
        ] {
            assert!(options.contains(setting), "{options}");
        }
        let (config, _) = parse("host=db options='-c plan_cache_mode=auto' dbname=switch").unwrap();
        let options = config.get_options().unwrap();
        assert!(options.contains("plan_cache_mode=auto"), "{options}");
        assert!(!options.contains("force_custom_plan"), "{options}");
    }

    #[test]
    fn ssl_parameters_are_taken_out_of_both_forms_and_the_rest_is_kept() {
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            (
                "host=a,b port=1,2 user=postgres dbname=switch target_session_attrs=read-write",
                "host=a,b port=1,2 user=postgres dbname=switch target_session_attrs=read-write",
                None,
                None,
            ),
            (
                "host=db sslmode=verify-full sslrootcert='/etc/switch/pg ca.pem' dbname=switch",
                "host=db dbname=switch",
                Some("verify-full"),
                Some("/etc/switch/pg ca.pem"),
            ),
            (
                "host=db password='it\\'s' sslmode = disable",
                "host=db password='it\\'s'",
                Some("disable"),
                None,
            ),
            (
                "postgres://u@127.0.0.1:5432/switch?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
                "postgres://u@127.0.0.1:5432/switch?application_name=x",
                Some("verify-full"),
                Some("/tmp/ca.pem"),
            ),
            (
                "postgresql://u@h/switch?sslmode=require",
                "postgresql://u@h/switch",
                Some("require"),
                None,
            ),
            ("postgres://u@h/switch", "postgres://u@h/switch", None, None),
        ];
        for (url, rest, mode, root) in cases {
            let (got, ssl) = take_ssl_params(url).unwrap();
            assert_eq!(&got, rest, "{url}");
            assert_eq!(ssl.mode.as_deref(), *mode, "{url}");
            assert_eq!(ssl.root_cert.as_deref(), *root, "{url}");
        }
        assert!(take_ssl_params("host=db sslmode").is_err());
        assert!(take_ssl_params("host='db").is_err());
    }

    #[test]
    fn tls_is_verified_or_refused_never_half() {
        let e = |url: &str| parse(url).err().unwrap_or_default();
        assert!(e("host=db sslmode=verify-full").contains("sslrootcert"));
        assert!(e("host=db sslmode=require").contains("sslrootcert"));
        assert!(e("host=db sslrootcert=/x.pem").contains("sslmode"));
        assert!(e("host=db sslmode=sometimes").contains("sometimes"));
        assert!(e("host=db sslmode=verify-full sslrootcert=/no/such.pem").contains("/no/such.pem"));
        let (config, _) = parse("host=db dbname=switch").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let (config, _) = parse("host=db sslmode=prefer").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }
}
