//! TLS on the gRPC listener (issue #15): certificates made at run time
//! (rcgen); a caller with the switch's CA and its own certificate gets
//! through; one trusting another CA is refused at the handshake, as are a
//! plaintext client and one without a certificate when the switch asks for
//! one; the switch refuses to listen in clear beyond loopback.

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
        .check_ledger(operator.sign("/switch.v1.Admin/CheckLedger", pb::CheckLedgerRequest {}))
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
