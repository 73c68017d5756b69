//! The VietQR profile of EMVCo (NAPAS): merchant account information in tag
//! 38 under GUID `A000000727`, the beneficiary's bank (BIN) and account in
//! 38/01, the service in 38/02, VND (704) in Vietnam (VN).

use std::fmt;

use crate::emv;
use crate::error::{ErrorKind, QrError, TagPath};
use crate::tlv::{self, Payload, Raw};

/// NAPAS's globally unique identifier for VietQR.
pub const NAPAS_GUID: &str = "A000000727";
/// VND, ISO 4217 numeric.
pub const CURRENCY_VND: &str = "704";
/// The longest account or card number in 38/01/01.
pub const ACCOUNT_CHARS_MAX: usize = 19;

/// What the code asks the payer's bank to do (38/02).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `QRIBFTTA`: transfer to an account.
    Account,
    /// `QRIBFTTC`: transfer to a card.
    Card,
    /// `QRPUSH`: pay a merchant.
    Push,
    /// `QRCASH`: cash withdrawal.
    Cash,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Account => "QRIBFTTA",
            Service::Card => "QRIBFTTC",
            Service::Push => "QRPUSH",
            Service::Cash => "QRCASH",
        }
    }
    pub fn parse(s: &str) -> Option<Service> {
        Some(match s {
            "QRIBFTTA" => Service::Account,
            "QRIBFTTC" => Service::Card,
            "QRPUSH" => Service::Push,
            "QRCASH" => Service::Cash,
            _ => return None,
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Point of initiation (01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiation {
    /// `11`: the same code for every payment.
    Static,
    /// `12`: a code for one payment.
    Dynamic,
}

impl Initiation {
    pub fn as_str(self) -> &'static str {
        match self {
            Initiation::Static => "static",
            Initiation::Dynamic => "dynamic",
        }
    }
}

/// A valid VietQR, borrowing from its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VietQr<'a> {
    /// The beneficiary bank's NAPAS BIN (38/01/00).
    pub bin: &'a str,
    /// Account or card number (38/01/01).
    pub account: &'a str,
    /// 38/02; absent on some merchant codes.
    pub service: Option<Service>,
    /// 54, as written (VND: digits only).
    pub amount: Option<&'a str>,
    pub currency: &'a str,
    pub country: &'a str,
    pub initiation: Option<Initiation>,
    pub mcc: Option<&'a str>,
    pub merchant_name: Option<&'a str>,
    pub merchant_city: Option<&'a str>,
    /// 62/01.
    pub bill_number: Option<&'a str>,
    /// 62/03.
    pub store: Option<&'a str>,
    /// 62/05.
    pub reference: Option<&'a str>,
    /// 62/07.
    pub terminal: Option<&'a str>,
    /// 62/08.
    pub purpose: Option<&'a str>,
}

impl<'a> VietQr<'a> {
    /// The amount in đồng, when the code carries one.
    pub fn amount_vnd(&self) -> Option<u64> {
        self.amount?.parse().ok()
    }

    /// The fields a decoded VietQR is summarised by, under their stable
    /// names (`pos-agent qr decode --json` prints exactly these).
    pub fn summary(&self) -> [(&'static str, Option<&'a str>); 9] {
        [
            ("bin", Some(self.bin)),
            ("account", Some(self.account)),
            ("service_code", self.service.map(Service::as_str)),
            ("amount", self.amount),
            ("currency", Some(self.currency)),
            ("country", Some(self.country)),
            ("initiation", self.initiation.map(Initiation::as_str)),
            ("purpose", self.purpose),
            ("bill_number", self.bill_number),
        ]
    }
}

fn not_vietqr(
    path: impl fmt::Display,
    offset: Option<usize>,
    message: impl Into<String>,
) -> QrError {
    QrError::new(ErrorKind::NotVietQr, path, offset, message)
}

/// Parse, verify the CRC, check EMVCo's rules and the VietQR profile.
pub fn decode(payload: &str) -> Result<VietQr<'_>, QrError> {
    let p = Payload::parse(payload)?;
    emv::validate(&p)?;
    from_payload(&p)
}

/// The VietQR in an already parsed and validated payload.
pub fn from_payload<'a>(p: &Payload<'a>) -> Result<VietQr<'a>, QrError> {
    let Some(t38) = p.get(38) else {
        let other = p.objects().iter().find(|o| (26..=51).contains(&o.id()));
        let guid = other
            .and_then(|o| o.child(0))
            .map(|g| g.value)
            .unwrap_or("none");
        return Err(not_vietqr(
            "",
            None,
            format!(
                "not a VietQR: no tag 38 (NAPAS), merchant account under another scheme (GUID {guid})"
            ),
        ));
    };
    let children = t38.children.as_ref().expect("38 is a strict template");
    let get = |id: u8| children.iter().find(|c| c.id == id);
    match get(0) {
        Some(g) if g.value.eq_ignore_ascii_case(NAPAS_GUID) => {}
        Some(g) => {
            return Err(not_vietqr(
                g.path,
                Some(g.offset),
                format!("GUID {:?} is not NAPAS's {NAPAS_GUID}", g.value),
            ));
        }
        None => return Err(not_vietqr("38/00", Some(t38.raw.offset), "GUID is missing")),
    }
    let beneficiary = get(1).ok_or_else(|| {
        not_vietqr(
            "38/01",
            Some(t38.raw.offset),
            "beneficiary organisation is missing",
        )
    })?;
    let (bin, account) = beneficiary_fields(beneficiary)?;
    let service = match get(2) {
        None => None,
        Some(s) => Some(Service::parse(s.value).ok_or_else(|| {
            not_vietqr(
                s.path,
                Some(s.offset),
                format!("unknown service code {:?}", s.value),
            )
        })?),
    };
    let value = |id: u8| p.get(id).map(|o| o.value());
    let currency = value(53).expect("validated: 53 present");
    if currency != CURRENCY_VND {
        return Err(not_vietqr(
            "53",
            p.get(53).map(|o| o.raw.offset),
            format!("currency {currency} is not VND ({CURRENCY_VND})"),
        ));
    }
    let country = value(58).expect("validated: 58 present");
    if country != "VN" {
        return Err(not_vietqr(
            "58",
            p.get(58).map(|o| o.raw.offset),
            format!("country {country} is not VN"),
        ));
    }
    if let Some(a) = p.get(54)
        && a.value().contains('.')
    {
        return Err(QrError::new(
            ErrorKind::Field,
            "54",
            Some(a.raw.offset),
            format!("{:?}: VND amounts have no decimals", a.value()),
        ));
    }
    let initiation = value(1).map(|v| {
        if v == "12" {
            Initiation::Dynamic
        } else {
            Initiation::Static
        }
    });
    let additional = |id: u8| p.get(62).and_then(|o| o.child(id)).map(|r| r.value);
    Ok(VietQr {
        bin,
        account,
        service,
        amount: value(54),
        currency,
        country,
        initiation,
        mcc: value(52),
        merchant_name: value(59),
        merchant_city: value(60),
        bill_number: additional(1),
        store: additional(3),
        reference: additional(5),
        terminal: additional(7),
        purpose: additional(8),
    })
}

fn beneficiary_fields<'a>(beneficiary: &Raw<'a>) -> Result<(&'a str, &'a str), QrError> {
    let (mut bin, mut account): (Option<Raw>, Option<Raw>) = (None, None);
    let mut seen = tlv::Seen::default();
    for raw in beneficiary.objects() {
        let raw = raw?;
        seen.check(&raw)?;
        match raw.id {
            0 => bin = Some(raw),
            1 => account = Some(raw),
            _ => {}
        }
    }
    let bin = bin.ok_or_else(|| {
        not_vietqr(
            "38/01/00",
            Some(beneficiary.offset),
            "acquirer BIN is missing",
        )
    })?;
    if bin.value.len() != 6 || !bin.value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QrError::new(
            ErrorKind::Field,
            bin.path,
            Some(bin.offset),
            format!("BIN {:?} is not six digits", bin.value),
        ));
    }
    let account = account.ok_or_else(|| {
        not_vietqr(
            "38/01/01",
            Some(beneficiary.offset),
            "account or card number is missing",
        )
    })?;
    if account.value.chars().count() > ACCOUNT_CHARS_MAX
        || !account.value.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(QrError::new(
            ErrorKind::Field,
            account.path,
            Some(account.offset),
            format!(
                "account {:?} is not 1 to {ACCOUNT_CHARS_MAX} letters or digits",
                account.value
            ),
        ));
    }
    Ok((bin.value, account.value))
}

/// What to put in a generated VietQR. Absent amount: a static code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec<'s> {
    pub bin: &'s str,
    pub account: &'s str,
    /// `None` leaves 38/02 out (some merchant codes do).
    pub service: Option<Service>,
    pub amount: Option<u64>,
    pub mcc: Option<&'s str>,
    pub merchant_name: Option<&'s str>,
    pub merchant_city: Option<&'s str>,
    pub bill_number: Option<&'s str>,
    pub store: Option<&'s str>,
    pub reference: Option<&'s str>,
    pub terminal: Option<&'s str>,
    pub purpose: Option<&'s str>,
}

impl<'s> Spec<'s> {
    /// A static transfer-to-account code.
    pub fn new(bin: &'s str, account: &'s str) -> Spec<'s> {
        Spec {
            bin,
            account,
            service: Some(Service::Account),
            amount: None,
            mcc: None,
            merchant_name: None,
            merchant_city: None,
            bill_number: None,
            store: None,
            reference: None,
            terminal: None,
            purpose: None,
        }
    }
}

fn unencodable(path: &str, message: impl Into<String>) -> QrError {
    QrError::new(ErrorKind::Unencodable, path, None, message)
}

/// Free text banks' apps accept: printable ASCII, 1 to `max` characters.
/// Vietnamese text must come without diacritics; nothing is truncated.
fn text<'v>(path: &str, value: &'v str, max: usize) -> Result<&'v str, QrError> {
    if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(unencodable(
            path,
            format!(
                "{c:?} cannot be encoded (printable ASCII only; write Vietnamese without diacritics)"
            ),
        ));
    }
    let n = value.len();
    if n == 0 || n > max {
        return Err(unencodable(
            path,
            format!("{n} characters, 1 to {max} allowed"),
        ));
    }
    Ok(value)
}

/// Generate a VietQR payload. Input that cannot be encoded is refused, never
/// truncated.
pub fn encode(spec: &Spec) -> Result<String, QrError> {
    if spec.bin.len() != 6 || !spec.bin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unencodable(
            "38/01/00",
            format!("BIN {:?} is not six digits", spec.bin),
        ));
    }
    if spec.account.is_empty()
        || spec.account.len() > ACCOUNT_CHARS_MAX
        || !spec.account.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(unencodable(
            "38/01/01",
            format!(
                "account {:?} is not 1 to {ACCOUNT_CHARS_MAX} letters or digits",
                spec.account
            ),
        ));
    }
    let mut out = String::with_capacity(160);
    tlv::write_object(&mut out, 0, "01");
    tlv::write_object(&mut out, 1, if spec.amount.is_some() { "12" } else { "11" });
    let mut beneficiary = String::with_capacity(40);
    tlv::write_object(&mut beneficiary, 0, spec.bin);
    tlv::write_object(&mut beneficiary, 1, spec.account);
    let mut t38 = String::with_capacity(64);
    tlv::write_object(&mut t38, 0, NAPAS_GUID);
    tlv::write_object(&mut t38, 1, &beneficiary);
    if let Some(s) = spec.service {
        tlv::write_object(&mut t38, 2, s.as_str());
    }
    tlv::write_object(&mut out, 38, &t38);
    if let Some(mcc) = spec.mcc {
        if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unencodable("52", format!("MCC {mcc:?} is not four digits")));
        }
        tlv::write_object(&mut out, 52, mcc);
    }
    tlv::write_object(&mut out, 53, CURRENCY_VND);
    if let Some(amount) = spec.amount {
        let s = amount.to_string();
        if amount == 0 || s.len() > 13 {
            return Err(unencodable(
                "54",
                format!("amount {amount} is not 1 to 13 digits"),
            ));
        }
        tlv::write_object(&mut out, 54, &s);
    }
    tlv::write_object(&mut out, 58, "VN");
    if let Some(name) = spec.merchant_name {
        tlv::write_object(&mut out, 59, text("59", name, 25)?);
    }
    if let Some(city) = spec.merchant_city {
        tlv::write_object(&mut out, 60, text("60", city, 15)?);
    }
    let mut additional = String::new();
    for (id, value) in [
        (1, spec.bill_number),
        (3, spec.store),
        (5, spec.reference),
        (7, spec.terminal),
        (8, spec.purpose),
    ] {
        if let Some(v) = value {
            let path = TagPath::ROOT.child(62).child(id).to_string();
            tlv::write_object(&mut additional, id, text(&path, v, 25)?);
        }
    }
    if !additional.is_empty() {
        if additional.len() > 99 {
            return Err(unencodable(
                "62",
                format!(
                    "additional data is {} characters, at most 99 fit",
                    additional.len()
                ),
            ));
        }
        tlv::write_object(&mut out, 62, &additional);
    }
    tlv::seal(&mut out);
    if out.len() > tlv::PAYLOAD_CHARS_MAX {
        return Err(unencodable(
            "",
            format!(
                "payload would be {} characters, at most {} allowed",
                out.len(),
                tlv::PAYLOAD_CHARS_MAX
            ),
        ));
    }
    debug_assert!(decode(&out).is_ok(), "generated payload decodes: {out}");
    Ok(out)
}
