//! The demo network's data: which banks, post offices, merchants and billers
//! a fresh data directory starts with. Data only (it imports nothing of the
//! switch): `config` takes its default bank list from here, the simulators
//! their customers, and [`crate::provision`] writes the network.

pub const DEMO_BANKS: [&str; 6] = ["970422", "970436", "970415", "970418", "970405", "970407"];
pub const DEMO_POST_OFFICES: [(&str, &str); 6] = [
    ("tho-tang", "Bưu điện Thổ Tang"),
    ("tam-dao", "Bưu điện Tam Đảo"),
    ("huong-dao", "Bưu điện Hướng Đạo"),
    ("lang-cong", "Bưu điện Lãng Công"),
    ("vinh-yen", "Bưu điện Vĩnh Yên"),
    ("phuc-yen", "Bưu điện Phúc Yên"),
];

/// The communes the demo's post offices and merchants belong to: id, name,
/// district, whether it is one of the plan's four pilot communes. The
/// first four are the pilot; Vĩnh Yên's and Phúc Yên's post offices serve
/// wards of those cities.
pub const DEMO_COMMUNES: [(&str, &str, &str, bool); 6] = [
    ("tho-tang", "Thị trấn Thổ Tang", "Huyện Vĩnh Tường", true),
    ("tam-dao", "Thị trấn Tam Đảo", "Huyện Tam Đảo", true),
    ("huong-dao", "Xã Hướng Đạo", "Huyện Tam Dương", true),
    ("lang-cong", "Xã Lãng Công", "Huyện Sông Lô", true),
    ("lien-bao", "Phường Liên Bảo", "Thành phố Vĩnh Yên", false),
    (
        "hung-vuong",
        "Phường Hùng Vương",
        "Thành phố Phúc Yên",
        false,
    ),
];

/// Each demo post office's commune, in `DEMO_POST_OFFICES` order.
pub const DEMO_POST_OFFICE_COMMUNES: [&str; 6] = [
    "tho-tang",
    "tam-dao",
    "huong-dao",
    "lang-cong",
    "lien-bao",
    "hung-vuong",
];
/// Each post office's prefunded e-float and each drawer's opening cash.
pub const EFLOAT_VND: u64 = 500_000_000;
pub const OPENING_CASH_VND: u64 = 20_000_000;

/// Each demo merchant's commune, in `DEMO_MERCHANTS` order.
pub const DEMO_MERCHANT_COMMUNES: [&str; 3] = ["tho-tang", "tam-dao", "huong-dao"];

/// The pilot communes' one-stop desks (issue #30): fee collectors, each a
/// merchant with MCC 9399 paid into the commune's budget account: id, name
/// and city as printed in their codes, commune, bank, account.
pub const DEMO_COLLECTORS: [(&str, &str, &str, &str, &str, &str); 4] = [
    (
        "mot-cua-tho-tang",
        "UBND TT THO TANG",
        "VINH TUONG",
        "tho-tang",
        "970418",
        "7100000001",
    ),
    (
        "mot-cua-tam-dao",
        "UBND TT TAM DAO",
        "TAM DAO",
        "tam-dao",
        "970418",
        "7100000002",
    ),
    (
        "mot-cua-huong-dao",
        "UBND XA HUONG DAO",
        "TAM DUONG",
        "huong-dao",
        "970418",
        "7100000003",
    ),
    (
        "mot-cua-lang-cong",
        "UBND XA LANG CONG",
        "SONG LO",
        "lang-cong",
        "970418",
        "7100000004",
    ),
];

/// A one-stop desk's fees, as the demo seeds them: code, name, unit price
/// (đồng), unit, legal basis. Certification fees are the national ones;
/// civil-status fees are set by the provincial council.
pub const DEMO_FEES: [(&str, &str, u64, &str, &str); 6] = [
    (
        "CT-BS",
        "Chứng thực bản sao từ bản chính",
        2_000,
        "trang",
        "Thông tư 226/2016/TT-BTC",
    ),
    (
        "CT-CK",
        "Chứng thực chữ ký",
        10_000,
        "trường hợp",
        "Thông tư 226/2016/TT-BTC",
    ),
    (
        "CT-HD",
        "Chứng thực hợp đồng, giao dịch",
        50_000,
        "hợp đồng",
        "Thông tư 226/2016/TT-BTC",
    ),
    (
        "TRICH-LUC",
        "Cấp bản sao trích lục hộ tịch",
        8_000,
        "bản",
        "Thông tư 281/2016/TT-BTC",
    ),
    (
        "XN-HON-NHAN",
        "Xác nhận tình trạng hôn nhân",
        5_000,
        "bản",
        "Nghị quyết HĐND tỉnh Vĩnh Phúc",
    ),
    (
        "KET-HON",
        "Đăng ký kết hôn (miễn lệ phí)",
        0,
        "hồ sơ",
        "Nghị định 123/2015/NĐ-CP",
    ),
];

/// The demo merchants: id, name and city as printed in their codes, MCC,
/// bank, account.
pub const DEMO_MERCHANTS: [(&str, &str, &str, &str, &str, &str); 3] = [
    (
        "tap-hoa-tho-tang",
        "TAP HOA THO TANG",
        "VINH TUONG",
        "5411",
        "970422",
        "8100000001",
    ),
    (
        "cafe-tam-dao",
        "CAFE MAY TAM DAO",
        "TAM DAO",
        "5814",
        "970436",
        "8100000002",
    ),
    (
        "nha-thuoc-huong-dao",
        "NHA THUOC HUONG DAO",
        "TAM DUONG",
        "5912",
        "970415",
        "8100000003",
    ),
];

/// A demo biller's category in the pilot report.
pub fn demo_biller_category(code: &str) -> &'static str {
    match code {
        "EVN" => "electricity",
        "NUOCVP" => "water",
        "VNPT" => "internet",
        "VIETTEL" | "VINAPHONE" | "MOBIFONE" => "telecom_tv",
        _ => "other",
    }
}

/// The demo billers: code, name, ledger number, partial payment allowed,
/// how their customer codes look (prefix, digits).
/// VIETTEL, VINAPHONE and MOBIFONE also sell airtime ([`crate::topup`]).
pub const DEMO_BILLERS: [(&str, &str, u64, bool, &str, usize); 6] = [
    ("EVN", "EVNNPC Vinh Phuc (electricity)", 1, false, "PD01", 9),
    (
        "NUOCVP",
        "Cap thoat nuoc Vinh Phuc (water)",
        2,
        false,
        "NVP",
        7,
    ),
    ("VNPT", "VNPT Vinh Phuc (internet)", 3, true, "VNPT", 8),
    ("VIETTEL", "Viettel Vinh Phuc (telecom)", 4, true, "098", 7),
    (
        "VINAPHONE",
        "VinaPhone Vinh Phuc (telecom)",
        5,
        true,
        "091",
        7,
    ),
    (
        "MOBIFONE",
        "MobiFone Vinh Phuc (telecom)",
        6,
        true,
        "090",
        7,
    ),
];
