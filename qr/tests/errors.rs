//! Every error path, data-driven: a payload, the kind of error, and words
//! the message must contain (path and offset included).

use qr::ErrorKind as K;

/// `body` followed by a correct CRC object.
fn sealed(body: &str) -> String {
    let mut s = format!("{body}6304");
    s.push_str(std::str::from_utf8(&qr::crc16_hex(s.as_bytes())).unwrap());
    s
}

const T38: &str = "38570010A00000072701270006970403011300110123456780208QRIBFTTA";

fn t(id: u8, value: &str) -> String {
    format!("{id:02}{:02}{value}", value.chars().count())
}

/// Tag 38 from its parts; `None` leaves a part out.
fn tag38(
    guid: Option<&str>,
    bin: Option<&str>,
    account: Option<&str>,
    service: Option<&str>,
) -> String {
    let beneficiary: String = [(0, bin), (1, account)]
        .iter()
        .filter_map(|(id, v)| v.map(|v| t(*id, v)))
        .collect();
    let mut inner = guid.map(|g| t(0, g)).unwrap_or_default();
    if !beneficiary.is_empty() {
        inner.push_str(&t(1, &beneficiary));
    }
    if let Some(s) = service {
        inner.push_str(&t(2, s));
    }
    t(38, &inner)
}

fn vietqr(extra_before_53: &str, after: &str) -> String {
    sealed(&format!(
        "000201010211{T38}{extra_before_53}5303704{after}5802VN"
    ))
}

#[test]
fn errors_name_the_kind_the_path_and_the_offset() {
    let long_name = "X".repeat(26);
    let cases: Vec<(String, K, &str)> = vec![
        (String::new(), K::PayloadLength, "empty payload"),
        ("0".repeat(513), K::PayloadLength, "513 characters"),
        (
            "0002".into(),
            K::LengthOverrun,
            "00: length 02 runs past the payload end at offset 0",
        ),
        (
            "000201A10211".into(),
            K::Structure,
            "object id \"A1\" is not two digits at offset 6",
        ),
        ("0002010100".into(), K::Structure, "01: length 00"),
        (
            "00020101x1".into(),
            K::Structure,
            "01: length \"x1\" is not two digits",
        ),
        (
            "000201010211385".into(),
            K::Structure,
            "object header cut short (3 characters left) at offset 12",
        ),
        (
            sealed(&format!("000201010211{T38}530370453037045802VN")),
            K::DuplicateId,
            "53: id appears twice at offset 80",
        ),
        (
            sealed(&format!("000201010211{T38}53037045802VN62140103A010103B02")),
            K::DuplicateId,
            "62/01: id appears twice",
        ),
        (
            sealed(&format!("010211000201{T38}53037045802VN")),
            K::FormatIndicator,
            "must come first",
        ),
        (
            sealed(&format!("000202010211{T38}53037045802VN")),
            K::FormatIndicator,
            "is \"02\", not \"01\"",
        ),
        (
            format!("000201010211{T38}630400005303704"),
            K::CrcPlacement,
            "63: CRC is not the last object",
        ),
        (
            format!("000201010211{T38}53037045802VN6304XYZW"),
            K::CrcPlacement,
            "is not four hex digits",
        ),
        (
            format!("000201010211{T38}53037045802VN6304"),
            K::LengthOverrun,
            "63: length 04 runs past the payload end",
        ),
        (
            format!("000201010211{T38}53037045802VN"),
            K::CrcPlacement,
            "CRC (63) is missing",
        ),
        (
            format!("000201010211{T38}53037045802VN63040000"),
            K::CrcMismatch,
            "crc mismatch: expected 9E6F, found 0000",
        ),
        (
            sealed(&format!("000201010213{T38}53037045802VN")),
            K::Field,
            "01: point of initiation \"13\"",
        ),
        (
            sealed(&format!("000201010211{T38}520412a453037045802VN")),
            K::Field,
            "52: \"12a4\" is not numeric",
        ),
        (
            sealed(&format!("000201010211{T38}5302705802VN")),
            K::Field,
            "53: \"70\" is not 3 digits",
        ),
        (
            vietqr("", "54051,000"),
            K::Field,
            "54: \"1,000\": an amount is digits",
        ),
        (vietqr("", "5402-5"), K::Field, "an amount is digits"),
        (vietqr("", "54010"), K::Field, "an amount is not zero"),
        (vietqr("", "54040.00"), K::Field, "an amount is not zero"),
        (vietqr("", "54051.2.3"), K::Field, "an amount is digits"),
        (vietqr("", "5402.5"), K::Field, "an amount is digits"),
        (vietqr("", "54025."), K::Field, "an amount is digits"),
        (
            vietqr("", "541412345678901234"),
            K::Field,
            "1 to 13 characters",
        ),
        (
            vietqr("", "540710000.5"),
            K::Field,
            "54: \"10000.5\": VND amounts have no decimals",
        ),
        (
            vietqr("", "550202"),
            K::Field,
            "55: tip indicator 02 needs a fixed fee in 56",
        ),
        (
            vietqr("", "56041000"),
            K::Field,
            "56: a fixed convenience fee needs tip indicator 02",
        ),
        (
            vietqr("", "57030.5"),
            K::Field,
            "57: a percentage convenience fee needs tip indicator 03",
        ),
        (
            vietqr("", "550203570512345"),
            K::Field,
            "57: \"12345\" is not a percentage",
        ),
        (vietqr("", "550204"), K::Field, "55: tip indicator \"04\""),
        (
            sealed(&format!("000201010211{T38}53037045802vn")),
            K::Field,
            "58: country \"vn\"",
        ),
        (
            sealed(&format!("000201010211{T38}53037045802VN5926{long_name}")),
            K::Field,
            "59: 26 characters, at most 25",
        ),
        (
            sealed(&format!("000201010211{T38}5802VN")),
            K::Missing,
            "transaction currency (53) is missing",
        ),
        (
            sealed("00020101021153037045802VN"),
            K::Missing,
            "no merchant account information",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(
                    Some("9999999999"),
                    Some("970403"),
                    Some("0011012345678"),
                    None
                )
            )),
            K::NotVietQr,
            "38/00: GUID \"9999999999\"",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                t(38, &format!("{}0100", t(0, "A000000727")))
            )),
            K::Structure,
            "38/01: length 00",
        ),
        (
            sealed("0002010102113899"),
            K::LengthOverrun,
            "38: length 99 runs past the payload end at offset 12",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                t(38, "0010A0000007270115ABC")
            )),
            K::LengthOverrun,
            "38/01: length 15 runs past the template end at offset 30",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(None, Some("970403"), Some("1234"), None)
            )),
            K::NotVietQr,
            "38/00: GUID is missing",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(Some("A000000727"), None, None, Some("QRPUSH"))
            )),
            K::NotVietQr,
            "38/01: beneficiary organisation is missing",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(Some("A000000727"), Some("97040"), Some("1234567"), None)
            )),
            K::Field,
            "38/01/00: BIN \"97040\" is not six digits at offset 34",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(Some("A000000727"), None, Some("1234567"), None)
            )),
            K::NotVietQr,
            "38/01/00: acquirer BIN is missing",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(Some("A000000727"), Some("970403"), None, None)
            )),
            K::NotVietQr,
            "38/01/01: account or card number is missing",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(
                    Some("A000000727"),
                    Some("970403"),
                    Some("1234567-1234567"),
                    None
                )
            )),
            K::Field,
            "38/01/01: account \"1234567-1234567\"",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(
                    Some("A000000727"),
                    Some("970403"),
                    Some("01234567890123456789"),
                    None
                )
            )),
            K::Field,
            "is not 1 to 19 letters or digits",
        ),
        (
            sealed(&format!(
                "000201010211{}53037045802VN",
                tag38(
                    Some("A000000727"),
                    Some("970403"),
                    Some("0123"),
                    Some("QRIBFTTX")
                )
            )),
            K::NotVietQr,
            "38/02: unknown service code \"QRIBFTTX\"",
        ),
        (
            sealed(&format!("000201010211{T38}53038405802VN")),
            K::NotVietQr,
            "53: currency 840 is not VND",
        ),
        (
            sealed(&format!("000201010211{T38}53037045802TH")),
            K::NotVietQr,
            "58: country TH is not VN",
        ),
        (
            sealed(&format!("000201010211{T38}5303704")),
            K::Missing,
            "country code (58) is missing",
        ),
        (
            sealed("00020101021138340010A00000072701160006970403010212530370458"),
            K::LengthOverrun,
            "58: length",
        ),
    ];
    for (payload, kind, words) in cases {
        let err = qr::decode(&payload).expect_err(&payload);
        let shown = err.to_string();
        assert_eq!(err.kind, kind, "{payload}: {shown}");
        assert!(
            shown.contains(words),
            "{payload}: {shown:?} does not say {words:?}"
        );
    }
}

#[test]
fn bytes_that_are_not_utf8_are_refused() {
    let mut bytes = b"000201010211".to_vec();
    bytes.push(0xFF);
    let err = qr::Payload::parse_bytes(&bytes).unwrap_err();
    assert_eq!(
        (err.kind, err.to_string()),
        (K::NotUtf8, "not UTF-8 at byte 12".to_string())
    );
}

#[test]
fn lengths_count_characters_and_the_crc_covers_utf8_bytes() {
    // 62/08 holds 19 characters in 23 bytes.
    let purpose = "Thanh toán đơn hàng";
    assert_eq!((purpose.chars().count(), purpose.len()), (19, 23));
    let payload = sealed(&format!(
        "000201010212{T38}5303704540418005802VN62230819{purpose}"
    ));
    let q = qr::decode(&payload).unwrap();
    assert_eq!(q.purpose, Some(purpose));
    assert_eq!(q.amount_vnd(), Some(1800));
    assert_eq!(qr::Payload::parse(&payload).unwrap().encode(), payload);
    // Counting bytes instead of characters is an error, not a panic.
    let wrong = sealed(&format!(
        "000201010212{T38}5303704540418005802VN62230823{purpose}"
    ));
    let err = qr::decode(&wrong).unwrap_err();
    assert_eq!(err.kind, K::LengthOverrun, "{err}");
    assert!(
        err.to_string()
            .starts_with("62/08: length 23 runs past the template end at offset"),
        "{err}"
    );
    // A multibyte character where a header belongs.
    let err = qr::decode("000201é10211").unwrap_err();
    assert_eq!(
        (err.kind, err.to_string()),
        (
            K::Structure,
            "object id \"é1\" is not two digits at offset 6".into()
        )
    );
}

#[test]
fn wallet_templates_that_are_not_templates_are_kept_as_written() {
    // MoMo-style: a short primitive under 80, no GUID.
    let payload = sealed(&format!("000201010211{T38}53037045802VN8003abc"));
    let q = qr::decode(&payload).unwrap();
    assert_eq!(q.account, "0011012345678");
    let tree = qr::Payload::parse(&payload).unwrap();
    assert_eq!(tree.get(80).unwrap().children, None);
    assert_eq!(tree.encode(), payload);
}

#[test]
fn generation_refuses_what_it_cannot_encode() {
    let base = qr::Spec::new("970422", "0123456789");
    let x26 = "x".repeat(26);
    let cases: Vec<(qr::Spec, &str)> = vec![
        (
            qr::Spec {
                purpose: Some("Thổ Tang"),
                ..base.clone()
            },
            "62/08: 'ổ' cannot be encoded",
        ),
        (
            qr::Spec {
                purpose: Some(&x26),
                ..base.clone()
            },
            "62/08: 26 characters, 1 to 25 allowed",
        ),
        (
            qr::Spec {
                bill_number: Some(""),
                ..base.clone()
            },
            "62/01: 0 characters",
        ),
        (
            qr::Spec {
                merchant_name: Some("tab\there"),
                ..base.clone()
            },
            "59: '\\t' cannot be encoded",
        ),
        (
            qr::Spec {
                merchant_city: Some("Thanh pho Vinh Yen"),
                ..base.clone()
            },
            "60: 18 characters, 1 to 15",
        ),
        (
            qr::Spec {
                amount: Some(0),
                ..base.clone()
            },
            "54: amount 0",
        ),
        (
            qr::Spec {
                amount: Some(10_000_000_000_000),
                ..base.clone()
            },
            "54: amount 10000000000000 is not 1 to 13 digits",
        ),
        (
            qr::Spec {
                mcc: Some("12a4"),
                ..base.clone()
            },
            "52: MCC",
        ),
        (
            qr::Spec::new("97042", "0123456789"),
            "38/01/00: BIN \"97042\"",
        ),
        (
            qr::Spec::new("970422", "01234567890123456789"),
            "38/01/01: account",
        ),
        (qr::Spec::new("970422", "0123-45"), "38/01/01: account"),
        (qr::Spec::new("970422", ""), "38/01/01: account"),
        (
            qr::Spec {
                bill_number: Some("BBBBBBBBBBBBBBBBBBBBBBBBB"),
                store: Some("SSSSSSSSSSSSSSSSSSSSSSSSS"),
                reference: Some("RRRRRRRRRRRRRRRRRRRRRRRRR"),
                purpose: Some("PPPPPPPPPPPPPPPPPPPPPPPPP"),
                ..base.clone()
            },
            "62: additional data is 116 characters, at most 99 fit",
        ),
    ];
    for (spec, words) in cases {
        let err = qr::encode(&spec).expect_err(words);
        assert_eq!(err.kind, K::Unencodable);
        assert!(
            err.to_string().contains(words),
            "{err:?} does not say {words:?}"
        );
    }
}

#[test]
fn generation_matches_a_real_napas_payload_byte_for_byte() {
    let spec = qr::Spec {
        amount: Some(180_000),
        bill_number: Some("NPS6869"),
        purpose: Some("thanh toan don hang"),
        ..qr::Spec::new("970403", "0011012345678")
    };
    assert_eq!(
        qr::encode(&spec).unwrap(),
        "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E"
    );
    let stat = qr::encode(&qr::Spec::new("970403", "0011012345678")).unwrap();
    assert_eq!(
        stat,
        "00020101021138570010A00000072701270006970403011300110123456780208QRIBFTTA53037045802VN63049E6F"
    );
    let push = qr::encode(&qr::Spec {
        service: None,
        ..qr::Spec::new("970403", "2112995044604025")
    })
    .unwrap();
    assert_eq!(qr::decode(&push).unwrap().service, None);
}
