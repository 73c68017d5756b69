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
