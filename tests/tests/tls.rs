//! TLS on the gRPC listener (issue #15): certificates made at run time
//! (rcgen); a caller with the switch's CA and its own certificate gets
//! through; one trusting another CA is refused at the handshake, as are a
//! plaintext client and one without a certificate when the switch asks for
//! one; the switch refuses to listen in clear beyond loopback; the load
//! generator runs and verifies over TLS.

use proto::v1 as pb;
use proto::v1::admin_client::AdminClient;
use tests::tls::{Ca, TlsSwitch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

async fn channel(address: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(address.to_string()).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// An operator's ledger check over `channel`: whether it got through.
async fn checks(channel: Result<Channel, String>, operator: &proto::auth::Credentials) -> bool {
    let Ok(channel) = channel else {
        return false;
    };
    AdminClient::new(channel)
        .check_ledger(operator.sign(
            "/paymentswitch.v1.Admin/CheckLedger",
            pb::CheckLedgerRequest {},
        ))
        .await
        .is_ok_and(|r| r.into_inner().balanced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_with_the_switchs_ca_and_its_own_certificate_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (Ca::new("switch CA"), Ca::new("another CA"));
    let (client_cert, client_key) = ca.issue(&["tho-tang-1"]);
    let (stranger_cert, stranger_key) = other.issue(&["stranger"]);
    let switch = TlsSwitch::start(dir.path(), &ca).await;
    let operator =
        proto::auth::Credentials::from_hex("operator", &switch.secret("operator")).unwrap();
    let https = switch.https.clone();
    let trusting = |ca: &str| {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost")
    };

    // The switch's CA and a certificate it issued: through.
    let good = trusting(&ca.cert.pem()).identity(Identity::from_pem(&client_cert, &client_key));
    assert!(checks(channel(&https, Some(good)).await, &operator).await);
    // Trusting another CA: the handshake fails.
    let wrong_ca =
        trusting(&other.cert.pem()).identity(Identity::from_pem(&client_cert, &client_key));
    assert!(!checks(channel(&https, Some(wrong_ca)).await, &operator).await);
    // No certificate, or one another CA issued: refused.
    assert!(
        !checks(
            channel(&https, Some(trusting(&ca.cert.pem()))).await,
            &operator
        )
        .await
    );
    let stranger =
        trusting(&ca.cert.pem()).identity(Identity::from_pem(&stranger_cert, &stranger_key));
    assert!(!checks(channel(&https, Some(stranger)).await, &operator).await);
    // In clear, to a TLS listener: refused.
    let plain = https.replace("https://", "http://");
    assert!(!checks(channel(&plain, None).await, &operator).await);
    // And TLS does not replace the signature: an unsigned call is refused.
    let good = trusting(&ca.cert.pem()).identity(Identity::from_pem(&client_cert, &client_key));
    let e = AdminClient::new(channel(&https, Some(good)).await.unwrap())
        .check_ledger(pb::CheckLedgerRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    switch.stop().await;
}

#[tokio::test]
async fn the_switch_refuses_to_listen_in_clear_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = switch::Config {
        data_dir: dir.path().to_path_buf(),
        ..switch::Config::default()
    };
    let e = switch::server::open(config.clone(), "0.0.0.0:50051".parse().unwrap())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("refusing to listen in clear"), "{e}");
    // Nothing was written: the refusal comes first.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut half = config.clone();
    half.tls.cert_file = Some(dir.path().join("server.pem"));
    let e = switch::server::open(half, "127.0.0.1:1".parse().unwrap())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("--tls-key"), "{e}");
}

/// The load generator reaches an `https://` switch that asks for client
/// certificates, with the CA and a certificate given as its flags give
/// them, and verifies what it was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_runs_and_verifies_over_tls() {
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("switch CA");
    let (cert, key) = ca.issue(&["loadtest"]);
    let switch = TlsSwitch::start(dir.path(), &ca).await;
    let target = loadtest::Target::from_profiles(
        &switch.data_dir.join("profiles"),
        std::slice::from_ref(&switch.https),
    )
    .unwrap();
    let target = loadtest::Target {
        tls: loadtest::TargetTls {
            ca_file: Some(switch.pki_dir.join("ca.pem")),
            cert_file: Some(tests::tls::write(&switch.pki_dir, "lt.pem", &cert)),
            key_file: Some(tests::tls::write(&switch.pki_dir, "lt.key", &key)),
        },
        ..target
    };
    let options = loadtest::Options {
        mode: loadtest::Mode::Closed { concurrency: 4 },
        mix: loadtest::parse_mix("cash_in=1").unwrap(),
        duration: Duration::from_millis(1000),
        warmup: Duration::ZERO,
        seed: 7,
        record: None,
        progress: false,
        connections: 1,
    };
    let report = tokio::time::timeout(Duration::from_secs(120), loadtest::run(target, options))
        .await
        .expect("the load run ended within two minutes")
        .unwrap();
    assert_eq!(report["verification"]["ok"], true, "{report}");
    assert!(report["completed"].as_u64().unwrap() > 0, "{report}");
    switch.stop().await;
}
