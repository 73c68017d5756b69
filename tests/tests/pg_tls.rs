//! The link to PostgreSQL over TLS (issue #26): a cluster that takes TLS
//! connections only, its certificate issued by a CA of the test's. A node
//! given `sslmode=verify-full sslrootcert=CA` runs on it (its ledger, its
//! records, its payment notices' LISTEN connection); one trusting another
//! CA, or dialling a name the certificate does not carry, is refused at
//! the handshake; clear text is refused by the server. Runs whatever
//! SWITCH_TEST_STORE says: it makes its own cluster.

use std::sync::Arc;

use tests::Harness;
use tests::tls::{Ca, write};

const MB: &str = "970422";

fn tls_url(pg: &pgtest::Cluster, host: &str, ca: &std::path::Path) -> String {
    let port = pg
        .url("switch")
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next().map(str::to_string))
        .unwrap();
    format!(
        "host={host} port={port} user=postgres dbname=switch sslmode=verify-full sslrootcert='{}'",
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_on_postgres_over_verified_tls_and_nothing_less_is_accepted() {
    let ca = Ca::new("switch test PostgreSQL CA");
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let pg = Arc::new(pgtest::Cluster::start_tls(&cert, &key));
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "pg-ca.pem", &ca.cert.pem());
    let url = tls_url(&pg, "127.0.0.1", &ca_file);

    // A whole node over TLS: migrations, provisioning, a cash-in, the
    // ledger's check.
    let h = Harness::start_node(tempfile::tempdir().unwrap(), pg.clone(), None, |c| {
        c.store.url = Some(url.clone());
    })
    .await;
    let c = h.customer(MB, 0);
    let tx = h
        .teller("tho-tang-1")
        .cash_in("over-tls", MB, &c.account, 250_000)
        .await
        .unwrap();
    assert_eq!(tx.status, proto::v1::TxStatus::Completed as i32);
    h.assert_ledger_clean().await;
    drop(h);

    // The server refuses clear text; the switch refuses what it cannot
    // verify.
    let refused = |url: String| async move {
        switch::store::pg_ledger::migrate(&url)
            .await
            .err()
            .map(|e| e.to_string())
            .expect("refused")
    };
    let clear = refused(pg.url("switch")).await;
    assert!(
        clear.contains("no encryption") || clear.contains("pg_hba"),
        "{clear}"
    );
    let other_ca = Ca::new("someone else's CA");
    let other = write(files.path(), "other-ca.pem", &other_ca.cert.pem());
    let untrusted = refused(tls_url(&pg, "127.0.0.1", &other)).await;
    assert!(
        untrusted.to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    // `localhost` reaches the same server, whose certificate names only
    // 127.0.0.1.
    let wrong_name = tls_url(&pg, "localhost", &ca_file);
    let misnamed = refused(wrong_name).await;
    assert!(
        misnamed.to_lowercase().contains("certificate"),
        "{misnamed}"
    );
}
