//! Certificates made at run time (rcgen), and a switch listening with TLS
//! that asks callers for certificates, for the TLS tests (issue #15).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A certificate authority: its certificate and key.
pub struct Ca {
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate for `names` (PEM certificate, PEM key).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A switch (embedded store) listening with TLS on loopback, its
/// certificate issued by `ca` for `localhost` and `127.0.0.1`, asking
/// callers for certificates `ca` issued.
pub struct TlsSwitch {
    /// `https://127.0.0.1:port`.
    pub https: String,
    pub data_dir: PathBuf,
    /// `ca.pem` (the CA), and whatever a test writes beside it.
    pub pki_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), switch::server::BoxError>>>,
}

impl TlsSwitch {
    pub async fn start(dir: &Path, ca: &Ca) -> TlsSwitch {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).unwrap();
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        let mut config = switch::Config {
            data_dir: dir.join("data"),
            ..switch::Config::default()
        };
        config.tls.cert_file = Some(write(&pki_dir, "server.pem", &cert));
        config.tls.key_file = Some(write(&pki_dir, "server.key", &key));
        config.tls.client_ca_file = Some(write(&pki_dir, "ca.pem", &ca.cert.pem()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let opened = switch::server::open(config.clone(), address).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(switch::server::serve(listener, opened, async {
            let _ = stopped.await;
        }));
        TlsSwitch {
            https: format!("https://127.0.0.1:{}", address.port()),
            data_dir: config.data_dir,
            pki_dir,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// The secret in a profile the switch wrote (`operator`, a terminal…).
    pub fn secret(&self, profile: &str) -> String {
        let text = std::fs::read_to_string(self.data_dir.join(format!("profiles/{profile}.toml")))
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("secret = \""))
            .map(|l| l.trim_end_matches('"').to_string())
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }
}
