//! Any bytes: parsing and decoding must not panic, and whatever parses must
//! re-encode to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = qr::Payload::parse_bytes(data) {
        assert_eq!(tree.encode().as_bytes(), data);
        let _ = qr::validate(&tree);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = qr::decode(text) {
            let _ = q.summary();
        }
    }
});
