//! Property tests: no input panics; generated codes decode to what was
//! asked; any well-formed tree re-encodes to the same bytes.

use proptest::prelude::*;

const VALID: &[&str] = &[
    "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E",
    "00020101021262110807tien le38560010A0000007270126000697041501121133666688880208QRIBFTTA5303704540460005802VN63046893",
    "00020101021138480010A00000072701300006970403011621129950446040255204581253037045802VN5910PHUONG CAC6005HANOI62110307NPS686963045802",
];

fn sealed(body: &str) -> String {
    let mut s = format!("{body}6304");
    s.push_str(std::str::from_utf8(&qr::crc16_hex(s.as_bytes())).unwrap());
    s
}

fn tlv(id: u8, value: &str) -> String {
    format!("{id:02}{:02}{value}", value.chars().count())
}

/// Printable text, including non-ASCII letters (lengths count characters).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![4 => 0x20u8..0x7f, 1 => Just(0)], 1..=max).prop_map(|v| {
        v.into_iter()
            .map(|b| if b == 0 { 'ệ' } else { char::from(b) })
            .collect()
    })
}

fn ascii_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(0x20u8..0x7f, 1..=max)
        .prop_map(|v| v.into_iter().map(char::from).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = qr::Payload::parse_bytes(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = qr::decode(s);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
        let _ = qr::decode(&s);
    }

    #[test]
    fn edited_real_payloads_never_panic(which in 0..VALID.len(), edits in prop::collection::vec((0usize..200, any::<char>(), 0u8..3), 1..4)) {
        let mut chars: Vec<char> = VALID[which].chars().collect();
        for (at, c, op) in edits {
            let at = at % (chars.len() + 1);
            match op {
                0 if at < chars.len() => chars[at] = c,
                1 => chars.insert(at, c),
                _ if at < chars.len() => { chars.remove(at); }
                _ => {}
            }
        }
        let s: String = chars.into_iter().collect();
        let _ = qr::decode(&s);
        // With the CRC fixed up, the structure itself is exercised.
        if s.len() > 8 {
            let body: String = s.chars().take(s.chars().count().saturating_sub(8)).collect();
            let _ = qr::decode(&sealed(&body));
        }
    }

    #[test]
    fn a_well_formed_tree_re_encodes_to_the_same_bytes(
        objects in prop::collection::vec((2u8..=99, prop::bool::ANY, prop::collection::vec((0u8..=99, text(12)), 1..4), text(30)), 0..8)
    ) {
        let mut body = tlv(0, "01");
        let mut used = std::collections::HashSet::new();
        for (id, template, children, value) in objects {
            if id == 63 || !used.insert(id) {
                continue;
            }
            if template && qr::is_template(id) {
                let mut seen = std::collections::HashSet::new();
                let inner: String = children.iter().filter(|(c, _)| seen.insert(*c)).map(|(c, v)| tlv(*c, v)).collect();
                if inner.chars().count() <= 99 {
                    body.push_str(&tlv(id, &inner));
                }
            } else if !qr::is_template(id) {
                body.push_str(&tlv(id, &value));
            }
        }
        let payload = sealed(&body);
        prop_assume!(payload.chars().count() <= qr::PAYLOAD_CHARS_MAX);
        let tree = qr::Payload::parse(&payload).map_err(|e| TestCaseError::fail(format!("{payload}: {e}")))?;
        prop_assert_eq!(tree.encode(), payload);
    }

    #[test]
    fn a_generated_code_decodes_to_what_was_asked(
        bin in "9704[0-9]{2}",
        account in "[0-9A-Z]{1,19}",
        amount in prop::option::of(1u64..10_000_000_000_000),
        service in prop::option::of(prop_oneof![Just(qr::Service::Account), Just(qr::Service::Card), Just(qr::Service::Push), Just(qr::Service::Cash)]),
        bill in prop::option::of(ascii_text(25)),
        purpose in prop::option::of(ascii_text(25)),
        name in prop::option::of(ascii_text(25)),
        city in prop::option::of(ascii_text(15)),
    ) {
        let spec = qr::Spec {
            service,
            amount,
            bill_number: bill.as_deref(),
            purpose: purpose.as_deref(),
            merchant_name: name.as_deref(),
            merchant_city: city.as_deref(),
            ..qr::Spec::new(&bin, &account)
        };
        let payload = qr::encode(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let q = qr::decode(&payload).map_err(|e| TestCaseError::fail(format!("{payload}: {e}")))?;
        prop_assert_eq!((q.bin, q.account, q.service, q.amount_vnd()), (bin.as_str(), account.as_str(), service, amount));
        prop_assert_eq!((q.bill_number, q.purpose), (bill.as_deref(), purpose.as_deref()));
        prop_assert_eq!((q.merchant_name, q.merchant_city), (name.as_deref(), city.as_deref()));
        let initiation = if amount.is_some() { qr::Initiation::Dynamic } else { qr::Initiation::Static };
        prop_assert_eq!(q.initiation, Some(initiation));
        prop_assert_eq!(qr::Payload::parse(&payload).unwrap().encode(), payload);
    }
}
