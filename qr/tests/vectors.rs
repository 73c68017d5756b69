//! Real payloads gathered from public VietQR libraries, with the fields they
//! must decode to or the reason they are invalid. The vectors are kept in
//! `tests/data/`; the shared test data beside the checkout, when present,
//! must be the same file.

use serde_json::Value;

const VENDORED: &str = include_str!("data/vietqr-vectors.json");

fn vectors() -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(VENDORED).expect("vectors are JSON")
}

#[test]
fn the_shared_vectors_are_the_ones_tested() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/qr/vietqr-vectors.json");
    match std::fs::read_to_string(&shared) {
        Ok(text) => assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::from_str::<Value>(VENDORED).unwrap(),
            "{} changed: copy it to qr/tests/data/",
            shared.display()
        ),
        // A checkout without the shared folder beside it tests the copy.
        Err(e) => eprintln!("{}: {e}; testing the vendored copy", shared.display()),
    }
    assert!(vectors().len() >= 14);
}

#[test]
fn every_valid_vector_decodes_to_its_fields_and_re_encodes_byte_for_byte() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v["valid"] == Value::Bool(true)) {
        let label = v["label"].as_str().unwrap();
        let payload = v["payload"].as_str().unwrap();
        let qr = qr::decode(payload).unwrap_or_else(|e| panic!("{label}: {e}"));
        let got: serde_json::Map<String, Value> = qr
            .summary()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map_or(Value::Null, |s| Value::String(s.into())),
                )
            })
            .collect();
        assert_eq!(Value::Object(got), v["expect"], "{label}");
        let tree = qr::Payload::parse(payload).unwrap();
        assert_eq!(
            tree.encode(),
            payload,
            "{label}: parse then encode gives the same bytes"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} valid vectors");
}

#[test]
fn every_invalid_vector_is_refused_for_its_reason() {
    let mut checked = 0;
    for v in vectors()
        .iter()
        .filter(|v| v["valid"] == Value::Bool(false))
    {
        let label = v["label"].as_str().unwrap();
        let why = v["why"].as_str().unwrap();
        let err = qr::decode(v["payload"].as_str().unwrap()).expect_err(label);
        let want = if why.contains("CRC") {
            vec![qr::ErrorKind::CrcMismatch]
        } else if why.contains("length") {
            vec![qr::ErrorKind::Structure, qr::ErrorKind::LengthOverrun]
        } else if why.contains("not a VietQR") {
            vec![qr::ErrorKind::NotVietQr]
        } else {
            panic!("{label}: no expectation for {why:?}")
        };
        assert!(
            want.contains(&err.kind),
            "{label}: {err} ({:?}) is not {why}",
            err.kind
        );
        checked += 1;
    }
    assert!(checked >= 4);
}
