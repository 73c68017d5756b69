//! NAPAS bank identification numbers (BIN, the acquirer id in 38/01/00) with
//! short names, for display and routing.

/// A bank on the NAPAS network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bank {
    pub bin: &'static str,
    pub short_name: &'static str,
    pub name: &'static str,
}

const fn bank(bin: &'static str, short_name: &'static str, name: &'static str) -> Bank {
    Bank {
        bin,
        short_name,
        name,
    }
}

/// Banks by BIN, in BIN order.
pub const BANKS: &[Bank] = &[
    bank("970400", "Saigonbank", "Saigon Bank for Industry and Trade"),
    bank(
        "970403",
        "Sacombank",
        "Saigon Thuong Tin Commercial Joint Stock Bank",
    ),
    bank(
        "970405",
        "Agribank",
        "Vietnam Bank for Agriculture and Rural Development",
    ),
    bank("970406", "DongA Bank", "Dong A Commercial Joint Stock Bank"),
    bank(
        "970407",
        "Techcombank",
        "Vietnam Technological and Commercial Joint Stock Bank",
    ),
    bank("970408", "GPBank", "Global Petro Commercial Bank"),
    bank(
        "970409",
        "BAC A BANK",
        "North Asia Commercial Joint Stock Bank",
    ),
    bank(
        "970410",
        "Standard Chartered",
        "Standard Chartered Bank Vietnam",
    ),
    bank(
        "970412",
        "PVcomBank",
        "Vietnam Public Joint Stock Commercial Bank",
    ),
    bank("970414", "OceanBank", "Ocean Commercial Bank"),
    bank(
        "970415",
        "VietinBank",
        "Vietnam Joint Stock Commercial Bank for Industry and Trade",
    ),
    bank("970416", "ACB", "Asia Commercial Joint Stock Bank"),
    bank(
        "970418",
        "BIDV",
        "Joint Stock Commercial Bank for Investment and Development of Vietnam",
    ),
    bank(
        "970419",
        "NCB",
        "National Citizen Commercial Joint Stock Bank",
    ),
    bank("970421", "VRB", "Vietnam - Russia Joint Venture Bank"),
    bank("970422", "MB", "Military Commercial Joint Stock Bank"),
    bank("970423", "TPBank", "Tien Phong Commercial Joint Stock Bank"),
    bank("970424", "Shinhan Bank", "Shinhan Bank Vietnam"),
    bank("970425", "ABBANK", "An Binh Commercial Joint Stock Bank"),
    bank(
        "970426",
        "MSB",
        "Vietnam Maritime Commercial Joint Stock Bank",
    ),
    bank("970427", "VietABank", "Viet A Commercial Joint Stock Bank"),
    bank("970428", "Nam A Bank", "Nam A Commercial Joint Stock Bank"),
    bank("970429", "SCB", "Sai Gon Joint Stock Commercial Bank"),
    bank(
        "970430",
        "PGBank",
        "Prosperity and Growth Commercial Joint Stock Bank",
    ),
    bank(
        "970431",
        "Eximbank",
        "Vietnam Export Import Commercial Joint Stock Bank",
    ),
    bank(
        "970432",
        "VPBank",
        "Vietnam Prosperity Joint Stock Commercial Bank",
    ),
    bank(
        "970433",
        "VietBank",
        "Vietnam Thuong Tin Commercial Joint Stock Bank",
    ),
    bank("970434", "Indovina", "Indovina Bank"),
    bank(
        "970436",
        "Vietcombank",
        "Joint Stock Commercial Bank for Foreign Trade of Vietnam",
    ),
    bank(
        "970437",
        "HDBank",
        "Ho Chi Minh City Development Joint Stock Commercial Bank",
    ),
    bank(
        "970438",
        "BaoViet Bank",
        "Bao Viet Joint Stock Commercial Bank",
    ),
    bank("970439", "Public Bank", "Public Bank Vietnam"),
    bank(
        "970440",
        "SeABank",
        "Southeast Asia Commercial Joint Stock Bank",
    ),
    bank(
        "970441",
        "VIB",
        "Vietnam International Commercial Joint Stock Bank",
    ),
    bank("970442", "Hong Leong", "Hong Leong Bank Vietnam"),
    bank(
        "970443",
        "SHB",
        "Saigon - Hanoi Commercial Joint Stock Bank",
    ),
    bank("970448", "OCB", "Orient Commercial Joint Stock Bank"),
    bank(
        "970449",
        "LPBank",
        "Loc Phat Vietnam Joint Stock Commercial Bank (LienVietPostBank)",
    ),
    bank(
        "970452",
        "KienlongBank",
        "Kien Long Commercial Joint Stock Bank",
    ),
    bank(
        "970454",
        "BVBank",
        "Viet Capital Commercial Joint Stock Bank",
    ),
    bank("970457", "Woori", "Woori Bank Vietnam"),
    bank("970458", "UOB", "United Overseas Bank Vietnam"),
];

/// The bank with this BIN.
pub fn bank_by_bin(bin: &str) -> Option<&'static Bank> {
    BANKS
        .binary_search_by(|b| b.bin.cmp(bin))
        .ok()
        .map(|i| &BANKS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        assert!(BANKS.windows(2).all(|w| w[0].bin < w[1].bin));
        assert!(
            BANKS
                .iter()
                .all(|b| b.bin.len() == 6 && b.bin.bytes().all(|c| c.is_ascii_digit()))
        );
        for (bin, short) in [
            ("970422", "MB"),
            ("970436", "Vietcombank"),
            ("970415", "VietinBank"),
            ("970418", "BIDV"),
            ("970405", "Agribank"),
            ("970407", "Techcombank"),
            ("970416", "ACB"),
            ("970403", "Sacombank"),
            ("970432", "VPBank"),
            ("970423", "TPBank"),
        ] {
            assert_eq!(bank_by_bin(bin).map(|b| b.short_name), Some(short));
        }
        assert_eq!(bank_by_bin("970499"), None);
    }
}
