//! `pos-agent qr` as a user runs it.

use std::process::{Command, Output};

use serde_json::Value;

fn pos_agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pos-agent"))
        .args(args)
        .output()
        .expect("pos-agent runs")
}

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../qr/tests/data/vietqr-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn decode_json_prints_exactly_the_expected_object_for_every_valid_vector() {
    for v in vectors().iter().filter(|v| v["valid"] == true) {
        let out = pos_agent(&["qr", "decode", v["payload"].as_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "{}: {}",
            v["label"],
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(printed, v["expect"], "{}", v["label"]);
    }
}

#[test]
fn decode_refuses_invalid_vectors_with_one_line_on_stderr() {
    for v in vectors().iter().filter(|v| v["valid"] == false) {
        for json in [true, false] {
            let mut args = vec!["qr", "decode", v["payload"].as_str().unwrap()];
            if json {
                args.push("--json");
            }
            let out = pos_agent(&args);
            assert!(!out.status.success(), "{} was accepted", v["label"]);
            assert!(out.stdout.is_empty());
            let err = String::from_utf8(out.stderr).unwrap();
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with("pos-agent: "), "{err}");
        }
    }
}

#[test]
fn encode_then_decode_round_trips_and_bad_input_is_refused() {
    let out = pos_agent(&[
        "qr",
        "encode",
        "--bin",
        "970422",
        "--account",
        "0123456789",
        "--amount",
        "50000",
        "--purpose",
        "tien dien",
        "--bill-number",
        "HD001",
    ]);
    assert!(out.status.success());
    let payload = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let decoded: Value =
        serde_json::from_slice(&pos_agent(&["qr", "decode", &payload, "--json"]).stdout).unwrap();
    assert_eq!(decoded["amount"], "50000");
    assert_eq!(decoded["purpose"], "tien dien");
    assert_eq!(decoded["bill_number"], "HD001");
    assert_eq!(decoded["initiation"], "dynamic");
    let out = pos_agent(&[
        "qr",
        "encode",
        "--bin",
        "970422",
        "--account",
        "0123456789",
        "--service",
        "QRPUSH",
    ]);
    let payload = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let decoded: Value =
        serde_json::from_slice(&pos_agent(&["qr", "decode", &payload, "--json"]).stdout).unwrap();
    assert_eq!(
        (
            decoded["service_code"].as_str(),
            decoded["initiation"].as_str()
        ),
        (Some("QRPUSH"), Some("static"))
    );
    let out = pos_agent(&[
        "qr",
        "encode",
        "--bin",
        "970422",
        "--account",
        "0123456789",
        "--purpose",
        "Tiền điện",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("62/08"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn show_draws_in_the_terminal_and_writes_a_png_that_scans_back() {
    let payload = vectors()[2]["payload"].as_str().unwrap().to_string();
    let out = pos_agent(&["qr", "show", &payload]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains('▀') || text.contains('▄'), "half blocks");
    assert!(
        text.contains("Sacombank") && text.contains("180000 VND"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("code.png");
    assert!(
        pos_agent(&["qr", "show", &payload, "--png", png_path.to_str().unwrap()])
            .status
            .success()
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    assert_eq!(
        grids[0].decode().unwrap().1,
        payload,
        "the PNG scans back to the payload"
    );

    let bad = pos_agent(&["qr", "show", "000201"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("refusing to show an invalid VietQR"));
}
