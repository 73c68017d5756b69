//! Parse+validate and encode of typical VietQR payloads.
//! cargo bench -p qr --bench codec

use criterion::{Criterion, black_box, criterion_group, criterion_main};

const DYNAMIC: &str = "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E";
const STATIC: &str = "00020101021138570010A00000072701270006970403011300110123456780208QRIBFTTA53037045802VN63049E6F";

fn bench(c: &mut Criterion) {
    c.bench_function(
        "decode dynamic VietQR (parse + CRC + EMVCo + VietQR)",
        |b| b.iter(|| qr::decode(black_box(DYNAMIC)).expect("valid")),
    );
    c.bench_function("decode static VietQR", |b| {
        b.iter(|| qr::decode(black_box(STATIC)).expect("valid"))
    });
    let spec = qr::Spec {
        amount: Some(180_000),
        bill_number: Some("NPS6869"),
        purpose: Some("thanh toan don hang"),
        ..qr::Spec::new("970403", "0011012345678")
    };
    c.bench_function("encode dynamic VietQR", |b| {
        b.iter(|| qr::encode(black_box(&spec)).expect("encodable"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
