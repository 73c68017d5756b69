//! Provisioning through Admin: a new post office and terminal work at once;
//! only operators may provision; duplicates and bad ids are refused.

use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::admin_client::AdminClient;
use switch::accounts::Kind;
use tests::{Harness, error_code};
use tonic::Code;

const MB: &str = "970422";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_provisions_a_post_office_and_a_terminal_that_works_at_once() {
    let h = Harness::start(|_| {}).await;
    let operator = h.credentials("operator");
    let mut admin = AdminClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap();
    // A post office names its commune, which must be provisioned first.
    let mut po = pb::ProvisionPostOfficeRequest {
        post_office_id: "lap-thach".into(),
        name: "Bưu điện Lập Thạch".into(),
        initial_float: 100_000_000,
        commune: "lap-thach".into(),
    };
    let e = admin
        .provision_post_office(
            operator.sign("/paymentswitch.v1.Admin/ProvisionPostOffice", po.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        e.message().contains("no commune lap-thach"),
        "{}",
        e.message()
    );
    let commune = admin
        .provision_commune(operator.sign(
            "/paymentswitch.v1.Admin/ProvisionCommune",
            pb::ProvisionCommuneRequest {
                commune_id: "lap-thach".into(),
                name: "Thị trấn Lập Thạch".into(),
                district: "Huyện Lập Thạch".into(),
                pilot: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(commune.name, "Thị trấn Lập Thạch");
    po.commune = commune.commune_id;
    let office = admin
        .provision_post_office(
            operator.sign("/paymentswitch.v1.Admin/ProvisionPostOffice", po.clone()),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(office.post_office_id, "lap-thach");
    let e = admin
        .provision_post_office(operator.sign("/paymentswitch.v1.Admin/ProvisionPostOffice", po))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::AlreadyExists, "already_exists")
    );
    let term = pb::ProvisionTerminalRequest {
        terminal_id: "lap-thach-1".into(),
        post_office_id: "lap-thach".into(),
        opening_cash: 5_000_000,
    };
    let r = admin
        .provision_terminal(
            operator.sign("/paymentswitch.v1.Admin/ProvisionTerminal", term.clone()),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.secret.len(), 64);
    let e = admin
        .provision_terminal(operator.sign("/paymentswitch.v1.Admin/ProvisionTerminal", term))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // The new terminal signs with the secret it was given, at once.
    let mut t = h.teller_with(Credentials::from_hex("lap-thach-1", &r.secret).unwrap());
    let c = h.customer(MB, 0);
    let tx = t.cash_in("new-1", MB, &c.account, 1_000_000).await.unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(tx.post_office_id, "lap-thach");
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(7)).await,
        99_000_000,
        "the seventh post office's e-float paid"
    );
    assert_eq!(-h.ledger_balance(Kind::Drawer.id(701)).await, 6_005_000);

    let bad = [
        pb::ProvisionTerminalRequest {
            terminal_id: "Bad Id".into(),
            post_office_id: "lap-thach".into(),
            opening_cash: 0,
        },
        pb::ProvisionTerminalRequest {
            terminal_id: "x".into(),
            post_office_id: "nowhere".into(),
            opening_cash: 0,
        },
    ];
    for req in bad {
        let e = admin
            .provision_terminal(operator.sign("/paymentswitch.v1.Admin/ProvisionTerminal", req))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    // A teller may not provision.
    let teller = h.credentials("tho-tang-1");
    let req = pb::ProvisionPostOfficeRequest {
        post_office_id: "rogue".into(),
        name: "Rogue".into(),
        initial_float: 1,
        commune: String::new(),
    };
    let e = admin
        .provision_post_office(teller.sign("/paymentswitch.v1.Admin/ProvisionPostOffice", req))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // After a restart the new terminal still signs.
    let h = h.restart(|_| {}).await;
    let mut t = h.teller_with(Credentials::from_hex("lap-thach-1", &r.secret).unwrap());
    assert_eq!(
        t.name_inquiry(MB, &c.account).await.unwrap().account_name,
        c.name
    );
    h.assert_ledger_clean().await;
}

/// The rotation grace of these tests: long enough for the calls made
/// within it, short enough to wait out.
const GRACE_MS: u64 = 3_000;

/// A revoked key stays refused after a restart; a rotated merchant key
/// works at once, and the old secret too until the grace ends, across a
/// restart, then not; only operators do either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stays_refused_after_a_restart_and_a_rotated_one_works_at_once() {
    let grace = |c: &mut switch::Config| c.key_rotation_grace_ms = GRACE_MS;
    let h = Harness::start(grace).await;
    let operator = h.credentials("operator");
    let revoke = pb::RevokeKeyRequest {
        key_id: "tam-dao-2".into(),
        reason: "left the post office".into(),
    };
    // A teller cannot revoke.
    let e = h
        .admin()
        .revoke_key(
            h.credentials("tam-dao-1")
                .sign("/paymentswitch.v1.Admin/RevokeKey", revoke.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = h
        .admin()
        .revoke_key(operator.sign(
            "/paymentswitch.v1.Admin/RevokeKey",
            pb::RevokeKeyRequest {
                reason: " ".into(),
                ..revoke.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a reason is required");
    h.admin()
        .revoke_key(operator.sign("/paymentswitch.v1.Admin/RevokeKey", revoke))
        .await
        .unwrap();
    let refused = |h: &Harness| {
        let mut t = h.teller("tam-dao-2");
        async move { t.get("01a2320756f2de31dd389cb4360dc500").await.unwrap_err() }
    };
    let e = refused(&h).await;
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());

    let old = h.credentials("cafe-tam-dao");
    let rotated = h
        .admin()
        .rotate_key(operator.sign(
            "/paymentswitch.v1.Admin/RotateKey",
            pb::RotateKeyRequest {
                key_id: "cafe-tam-dao".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.role, "merchant");
    let until_ms = rotated.previous_valid_until_ms;
    let now_ms = proto::auth::now_ms();
    assert!(
        until_ms > now_ms && until_ms <= now_ms + GRACE_MS as i64,
        "{until_ms}"
    );
    let new = Credentials::from_hex("cafe-tam-dao", &rotated.secret).unwrap();
    let mut merchant = h.merchant("cafe-tam-dao");
    merchant.credentials = old.clone();
    merchant
        .create_qr("o-grace", 10_000, "C-1", 0)
        .await
        .unwrap();
    let h = h.restart(grace).await;
    let e = refused(&h).await;
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());
    let mut merchant = h.merchant("cafe-tam-dao");
    merchant.credentials = new.clone();
    merchant.create_qr("o-new", 10_000, "C-1", 0).await.unwrap();
    // Once the grace is over, the old secret is refused.
    tokio::time::sleep(std::time::Duration::from_millis(
        (until_ms - proto::auth::now_ms()).max(0) as u64 + 50,
    ))
    .await;
    merchant.credentials = old;
    let e = merchant
        .create_qr("o-old", 10_000, "C-1", 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    merchant.credentials = new;
    merchant
        .create_qr("o-new-2", 10_000, "C-1", 0)
        .await
        .unwrap();
    // The other tellers are untouched.
    let e = h
        .teller("tam-dao-1")
        .get("01a2320756f2de31dd389cb4360dc500")
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Unauthenticated, "tam-dao-1 still signs");
}

/// Callers' secrets are sealed in the store, on either backend; a secret
/// an earlier version stored in the clear still signs, and is sealed at the
/// next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_clear_ones_from_before_are_sealed_at_start() {
    let h = Harness::start(|_| {}).await;
    let profile = std::fs::read_to_string(h.data_dir().join("profiles/tho-tang-1.toml")).unwrap();
    let plain = profile
        .lines()
        .find_map(|l| l.strip_prefix("secret = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .expect("the profile's secret");
    assert_eq!(plain.len(), 64);
    let stored = h.switch.store.terminal("tho-tang-1").unwrap().unwrap();
    assert!(stored.secret.is_sealed());
    let json = serde_json::to_string(&stored).unwrap();
    assert!(!json.contains(&plain), "{json}");
    // The embedded store's files hold no caller's secret in the clear.
    if h.postgres.is_none() {
        let mut files = vec![h.data_dir().join("switch")];
        while let Some(f) = files.pop() {
            if f.is_dir() {
                files.extend(std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().path()));
            } else {
                let bytes = std::fs::read(&f).unwrap();
                assert!(
                    !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                    "{} holds a secret in the clear",
                    f.display()
                );
            }
        }
    }
    // A record as earlier versions wrote it: the hex in the clear.
    let mut legacy: serde_json::Value = serde_json::to_value(&stored).unwrap();
    legacy["secret_hex"] = serde_json::Value::String(plain.clone());
    legacy.as_object_mut().unwrap().remove("secret");
    let legacy: switch::store::Terminal = serde_json::from_value(legacy).unwrap();
    assert!(!legacy.secret.is_sealed());
    h.switch.store.put_terminal(&legacy).unwrap();
    h.switch.store.durable().await.unwrap();
    let h = h.restart(|_| {}).await;
    let resealed = h.switch.store.terminal("tho-tang-1").unwrap().unwrap();
    assert!(resealed.secret.is_sealed());
    let c = h.customer(MB, 0);
    h.teller("tho-tang-1")
        .cash_in("sealed-1", MB, &c.account, 100_000)
        .await
        .unwrap();
}
