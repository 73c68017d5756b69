//! TLS for a client of the switch's services (pos-agent, loadtest, the
//! switch itself as a client of a remote bank), from PEM files: the one
//! place that reads them, so every client refuses the same mistakes.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Where a client's TLS comes from: the CA that signed the server's
/// certificate, and this client's own certificate and key where the server
/// asks for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls<'a> {
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
}

impl ClientTls<'_> {
    /// The rustls configuration, or why the files do not make one.
    pub fn config(&self) -> Result<ClientTlsConfig, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let ca = self
            .ca_file
            .ok_or("an https:// address needs the CA's PEM file that signed its certificate")?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err("a client certificate and its key go together".into()),
        }
        Ok(tls)
    }

    /// `address` as an endpoint: TLS for `https://`; for `http://`, none,
    /// and a refusal if TLS files were given (they would silently go
    /// unused).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|e| format!("bad address {address}: {e}"))?;
        if address.starts_with("https://") {
            endpoint
                .tls_config(self.config()?)
                .map_err(|e| format!("TLS to {address}: {e}"))
        } else if *self != ClientTls::default() {
            Err(format!(
                "{address} is not https://, but TLS files were given for it"
            ))
        } else {
            Ok(endpoint)
        }
    }
}

/// Whether the host of `address` (a URL) is a loopback address, where
/// clear text never leaves the machine.
pub fn is_loopback(address: &str) -> bool {
    let Ok(uri) = address.parse::<tonic::codegen::http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_told_apart_from_everything_else() {
        for (address, loopback) in [
            ("http://127.0.0.1:6000", true),
            ("http://127.5.0.1:6000", true),
            ("http://localhost:6000", true),
            ("http://[::1]:6000", true),
            ("http://10.0.0.5:6000", false),
            ("http://bank.example:6000", false),
            ("http://[2001:db8::1]:6000", false),
            ("not a url", false),
        ] {
            assert_eq!(is_loopback(address), loopback, "{address}");
        }
    }

    #[test]
    fn files_that_would_go_unused_or_are_half_given_are_refused() {
        let ca = Path::new("/nonexistent/ca.pem");
        let with_ca = ClientTls {
            ca_file: Some(ca),
            ..ClientTls::default()
        };
        let err = with_ca.endpoint("http://127.0.0.1:1").unwrap_err();
        assert!(err.contains("not https://"), "{err}");
        let err = ClientTls::default()
            .endpoint("https://127.0.0.1:1")
            .unwrap_err();
        assert!(err.contains("CA"), "{err}");
        let half = ClientTls {
            ca_file: Some(ca),
            cert_file: Some(ca),
            key_file: None,
        };
        assert!(half.config().is_err());
        assert!(ClientTls::default().endpoint("http://127.0.0.1:1").is_ok());
    }
}
