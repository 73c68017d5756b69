//! Transactions' records on disk in a compact binary schema (issue #26):
//! protobuf through prost, field by field, so that a field added later is
//! read as its default by this version and skipped by an older one.
//!
//! A transaction's record is written three times in a cash-in and was 86%
//! of the store's bytes as JSON (about 905 bytes); here the id is raw bytes
//! and names are tags. The value's first byte is its format: [`TX_FORMAT`]
//! here, then a CRC-32 of the message (protobuf has no end marker: a value
//! cut short at a field's boundary would otherwise decode, its later
//! fields silently at their defaults), then the message; 1 (or a bare `{`)
//! is the JSON of earlier versions, which still reads. The schema is this file: tags are
//! never reused, enums' numbers never change meaning, and a value that
//! does not decode, or names an enum value this version does not know, is
//! an error, never a default.

use prost::Message;

use super::records::{
    Action, BillPart, FeeParts, Funding, Kind, MerchantPart, Party, Stage, Status, Step, TxRecord,
};
use crate::adapters::biller::Bill;
use crate::ids::TxId;

/// The first byte of a transaction's record in this schema.
pub const TX_FORMAT: u8 = 2;

#[derive(Clone, PartialEq, Message)]
struct WireTx {
    /// The id's 16 bytes (a `TxId`), or empty with `id_text` set.
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(int32, tag = "3")]
    status: i32,
    #[prost(int32, tag = "4")]
    stage: i32,
    #[prost(string, tag = "5")]
    terminal_id: String,
    #[prost(string, tag = "6")]
    post_office_id: String,
    #[prost(string, tag = "7")]
    bank_bin: String,
    #[prost(string, tag = "8")]
    account: String,
    #[prost(string, tag = "9")]
    account_name: String,
    #[prost(uint64, tag = "10")]
    amount: u64,
    #[prost(uint64, tag = "11")]
    fee_total: u64,
    #[prost(uint64, tag = "12")]
    fee_commission: u64,
    #[prost(uint64, tag = "13")]
    fee_switch: u64,
    #[prost(string, tag = "14")]
    client_request_id: String,
    #[prost(string, tag = "15")]
    fingerprint: String,
    #[prost(int64, tag = "16")]
    created_at_ms: i64,
    #[prost(int64, tag = "17")]
    updated_at_ms: i64,
    #[prost(string, optional, tag = "18")]
    error_code: Option<String>,
    #[prost(string, optional, tag = "19")]
    error_message: Option<String>,
    #[prost(string, optional, tag = "20")]
    bank_reference: Option<String>,
    #[prost(int64, optional, tag = "21")]
    confirm_deadline_ms: Option<i64>,
    #[prost(message, repeated, tag = "22")]
    steps: Vec<WireStep>,
    #[prost(string, optional, tag = "23")]
    qr_id: Option<String>,
    #[prost(message, optional, tag = "24")]
    merchant: Option<WireMerchant>,
    #[prost(message, optional, tag = "25")]
    bill: Option<WireBillPart>,
    #[prost(bool, tag = "26")]
    limits_held: bool,
    #[prost(string, repeated, tag = "27")]
    limit_keys: Vec<String>,
    #[prost(string, optional, tag = "28")]
    pays_for: Option<String>,
    #[prost(string, optional, tag = "29")]
    paid_by: Option<String>,
    #[prost(string, optional, tag = "30")]
    card_token: Option<String>,
    /// An id that is not a `TxId` (none is written so; kept whole).
    #[prost(string, tag = "31")]
    id_text: String,
    #[prost(string, optional, tag = "32")]
    teller: Option<String>,
    #[prost(int64, optional, tag = "33")]
    taken_at_ms: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct WireStep {
    /// 1 a bank, 2 a biller.
    #[prost(int32, tag = "1")]
    party_kind: i32,
    #[prost(string, tag = "2")]
    party: String,
    /// 1 credit, 2 debit, 3 debit with code, 4 card debit, 5 pay bills,
    /// 6 top-up.
    #[prost(int32, tag = "3")]
    action: i32,
    /// The account, the masked card, the bills' customer or the phone.
    #[prost(string, tag = "4")]
    target: String,
    #[prost(string, repeated, tag = "5")]
    bills: Vec<String>,
    #[prost(uint64, tag = "6")]
    amount: u64,
    #[prost(string, optional, tag = "7")]
    party_reference: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct WireMerchant {
    #[prost(string, tag = "1")]
    merchant_id: String,
    #[prost(string, tag = "2")]
    qr_id: String,
    #[prost(string, optional, tag = "3")]
    order_reference: Option<String>,
    #[prost(string, optional, tag = "4")]
    purpose: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct WireBillPart {
    #[prost(string, tag = "1")]
    biller: String,
    #[prost(string, tag = "2")]
    customer: String,
    #[prost(string, tag = "3")]
    customer_name: String,
    #[prost(message, repeated, tag = "4")]
    bills: Vec<WireBill>,
    #[prost(int32, tag = "5")]
    funding: i32,
}

#[derive(Clone, PartialEq, Message)]
struct WireBill {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    period: String,
    #[prost(uint64, tag = "3")]
    amount: u64,
    #[prost(string, tag = "4")]
    due_date: String,
}

// The enums' numbers: fixed forever (0 is never written, so that a field
// missing from a damaged value is caught).

fn kind_number(k: Kind) -> i32 {
    match k {
        Kind::CashIn => 1,
        Kind::CashOut => 2,
        Kind::QrPayment => 3,
        Kind::BillPayment => 4,
        Kind::TopUp => 5,
    }
}

fn kind_of(n: i32) -> Option<Kind> {
    Some(match n {
        1 => Kind::CashIn,
        2 => Kind::CashOut,
        3 => Kind::QrPayment,
        4 => Kind::BillPayment,
        5 => Kind::TopUp,
        _ => return None,
    })
}

fn status_number(s: Status) -> i32 {
    match s {
        Status::Pending => 1,
        Status::Completed => 2,
        Status::Failed => 3,
        Status::Reversed => 4,
    }
}

fn status_of(n: i32) -> Option<Status> {
    Some(match n {
        1 => Status::Pending,
        2 => Status::Completed,
        3 => Status::Failed,
        4 => Status::Reversed,
        _ => return None,
    })
}

fn stage_number(s: Stage) -> i32 {
    match s {
        Stage::Reserved => 1,
        Stage::AtBank => 2,
        Stage::AwaitingConfirm => 3,
        Stage::AwaitingPayment => 4,
        Stage::Reversing => 5,
        Stage::Done => 6,
    }
}

fn stage_of(n: i32) -> Option<Stage> {
    Some(match n {
        1 => Stage::Reserved,
        2 => Stage::AtBank,
        3 => Stage::AwaitingConfirm,
        4 => Stage::AwaitingPayment,
        5 => Stage::Reversing,
        6 => Stage::Done,
        _ => return None,
    })
}

fn funding_number(f: Funding) -> i32 {
    match f {
        Funding::Cash => 1,
        Funding::Account => 2,
        Funding::Qr => 3,
        Funding::Card => 4,
    }
}

fn funding_of(n: i32) -> Option<Funding> {
    Some(match n {
        1 => Funding::Cash,
        2 => Funding::Account,
        3 => Funding::Qr,
        4 => Funding::Card,
        _ => return None,
    })
}

fn step_to_wire(s: &Step) -> WireStep {
    let (party_kind, party) = match &s.party {
        Party::Bank(b) => (1, b.clone()),
        Party::Biller(b) => (2, b.clone()),
    };
    let (action, target, bills) = match &s.action {
        Action::Credit { account } => (1, account.clone(), Vec::new()),
        Action::Debit { account } => (2, account.clone(), Vec::new()),
        Action::DebitWithCode { account } => (3, account.clone(), Vec::new()),
        Action::CardDebit { card_masked } => (4, card_masked.clone(), Vec::new()),
        Action::PayBills { customer, bills } => (5, customer.clone(), bills.clone()),
        Action::TopUp { phone } => (6, phone.clone(), Vec::new()),
    };
    WireStep {
        party_kind,
        party,
        action,
        target,
        bills,
        amount: s.amount,
        party_reference: s.party_reference.clone(),
    }
}

fn step_from_wire(w: WireStep) -> Result<Step, String> {
    let party = match w.party_kind {
        1 => Party::Bank(w.party),
        2 => Party::Biller(w.party),
        n => return Err(format!("unknown party kind {n}")),
    };
    let target = w.target;
    let action = match w.action {
        1 => Action::Credit { account: target },
        2 => Action::Debit { account: target },
        3 => Action::DebitWithCode { account: target },
        4 => Action::CardDebit {
            card_masked: target,
        },
        5 => Action::PayBills {
            customer: target,
            bills: w.bills,
        },
        6 => Action::TopUp { phone: target },
        n => return Err(format!("unknown action {n}")),
    };
    Ok(Step {
        party,
        action,
        amount: w.amount,
        party_reference: w.party_reference,
    })
}

/// `t` in this schema, its format byte first.
pub fn encode_tx(t: &TxRecord) -> Vec<u8> {
    let (id, id_text) = match TxId::parse(&t.id) {
        Some(id) => (id.to_bytes().to_vec(), String::new()),
        None => (Vec::new(), t.id.clone()),
    };
    let w = WireTx {
        id,
        kind: kind_number(t.kind),
        status: status_number(t.status),
        stage: stage_number(t.stage),
        terminal_id: t.terminal_id.clone(),
        post_office_id: t.post_office_id.clone(),
        bank_bin: t.bank_bin.clone(),
        account: t.account.clone(),
        account_name: t.account_name.clone(),
        amount: t.amount,
        fee_total: t.fee.total,
        fee_commission: t.fee.commission,
        fee_switch: t.fee.switch,
        client_request_id: t.client_request_id.clone(),
        fingerprint: t.fingerprint.clone(),
        created_at_ms: t.created_at_ms,
        updated_at_ms: t.updated_at_ms,
        error_code: t.error_code.clone(),
        error_message: t.error_message.clone(),
        bank_reference: t.bank_reference.clone(),
        confirm_deadline_ms: t.confirm_deadline_ms,
        steps: t.steps.iter().map(step_to_wire).collect(),
        qr_id: t.qr_id.clone(),
        merchant: t.merchant.as_ref().map(|m| WireMerchant {
            merchant_id: m.merchant_id.clone(),
            qr_id: m.qr_id.clone(),
            order_reference: m.order_reference.clone(),
            purpose: m.purpose.clone(),
        }),
        bill: t.bill.as_ref().map(|b| WireBillPart {
            biller: b.biller.clone(),
            customer: b.customer.clone(),
            customer_name: b.customer_name.clone(),
            bills: b
                .bills
                .iter()
                .map(|x| WireBill {
                    id: x.id.clone(),
                    period: x.period.clone(),
                    amount: x.amount,
                    due_date: x.due_date.clone(),
                })
                .collect(),
            funding: funding_number(b.funding),
        }),
        limits_held: t.limits_held,
        limit_keys: t.limit_keys.clone(),
        pays_for: t.pays_for.clone(),
        paid_by: t.paid_by.clone(),
        card_token: t.card_token.clone(),
        id_text,
        teller: t.teller.clone(),
        taken_at_ms: t.taken_at_ms,
    };
    let mut out = Vec::with_capacity(5 + w.encoded_len());
    out.push(TX_FORMAT);
    out.extend_from_slice(&[0; 4]);
    w.encode(&mut out).expect("a Vec has room");
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A record in this schema, its format byte taken off: the record, or why
/// it does not decode.
pub fn decode_tx(body: &[u8]) -> Result<TxRecord, String> {
    let (crc, message) = body
        .split_first_chunk::<4>()
        .ok_or("shorter than its checksum")?;
    if u32::from_le_bytes(*crc) != crc32fast::hash(message) {
        return Err("its checksum does not match (damaged or cut short)".to_string());
    }
    let w = WireTx::decode(message).map_err(|e| e.to_string())?;
    let id = if w.id_text.is_empty() {
        let bytes: [u8; 16] =
            w.id.as_slice()
                .try_into()
                .map_err(|_| format!("an id of {} bytes", w.id.len()))?;
        TxId::from_u128(u128::from_be_bytes(bytes))
            .ok_or("an id that is not a transaction id")?
            .to_string()
    } else {
        w.id_text
    };
    let bill = match w.bill {
        Some(b) => Some(BillPart {
            biller: b.biller,
            customer: b.customer,
            customer_name: b.customer_name,
            bills: b
                .bills
                .into_iter()
                .map(|x| Bill {
                    id: x.id,
                    period: x.period,
                    amount: x.amount,
                    due_date: x.due_date,
                })
                .collect(),
            funding: funding_of(b.funding).ok_or(format!("unknown funding {}", b.funding))?,
        }),
        None => None,
    };
    Ok(TxRecord {
        id,
        kind: kind_of(w.kind).ok_or(format!("unknown kind {}", w.kind))?,
        status: status_of(w.status).ok_or(format!("unknown status {}", w.status))?,
        stage: stage_of(w.stage).ok_or(format!("unknown stage {}", w.stage))?,
        terminal_id: w.terminal_id,
        post_office_id: w.post_office_id,
        bank_bin: w.bank_bin,
        account: w.account,
        account_name: w.account_name,
        amount: w.amount,
        fee: FeeParts {
            total: w.fee_total,
            commission: w.fee_commission,
            switch: w.fee_switch,
        },
        client_request_id: w.client_request_id,
        fingerprint: w.fingerprint,
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
        error_code: w.error_code,
        error_message: w.error_message,
        bank_reference: w.bank_reference,
        confirm_deadline_ms: w.confirm_deadline_ms,
        steps: w
            .steps
            .into_iter()
            .map(step_from_wire)
            .collect::<Result<_, _>>()?,
        qr_id: w.qr_id,
        merchant: w.merchant.map(|m| MerchantPart {
            merchant_id: m.merchant_id,
            qr_id: m.qr_id,
            order_reference: m.order_reference,
            purpose: m.purpose,
        }),
        bill,
        limits_held: w.limits_held,
        limit_keys: w.limit_keys,
        pays_for: w.pays_for,
        paid_by: w.paid_by,
        card_token: w.card_token,
        teller: w.teller,
        taken_at_ms: w.taken_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with every field set, and every variant of its enums
    /// across `n`.
    fn full(n: usize) -> TxRecord {
        let mut t = crate::store::test_record(
            [
                Kind::CashIn,
                Kind::CashOut,
                Kind::QrPayment,
                Kind::BillPayment,
                Kind::TopUp,
            ][n % 5],
        );
        t.status = [
            Status::Pending,
            Status::Completed,
            Status::Failed,
            Status::Reversed,
        ][n % 4];
        t.stage = [
            Stage::Reserved,
            Stage::AtBank,
            Stage::AwaitingConfirm,
            Stage::AwaitingPayment,
            Stage::Reversing,
            Stage::Done,
        ][n % 6];
        t.error_code = Some("bank_rejected".into());
        t.error_message = Some("Tài khoản không đủ số dư".into());
        t.confirm_deadline_ms = Some(1_800_000_000_000);
        t.steps = (0..6)
            .map(|i| Step {
                party: if i % 2 == 0 {
                    Party::Bank("970422".into())
                } else {
                    Party::Biller("EVN".into())
                },
                action: match i {
                    0 => Action::Credit {
                        account: "0123".into(),
                    },
                    1 => Action::Debit {
                        account: "0456".into(),
                    },
                    2 => Action::DebitWithCode {
                        account: "0789".into(),
                    },
                    3 => Action::CardDebit {
                        card_masked: "970436******1234".into(),
                    },
                    4 => Action::PayBills {
                        customer: "PD01".into(),
                        bills: vec!["b1".into(), "b2".into()],
                    },
                    _ => Action::TopUp {
                        phone: "0981234567".into(),
                    },
                },
                amount: 1_000 * i,
                party_reference: (i % 2 == 0).then(|| format!("ref-{i}")),
            })
            .collect();
        t.qr_id = Some("q1".into());
        t.merchant = Some(MerchantPart {
            merchant_id: "tap-hoa".into(),
            qr_id: "q1".into(),
            order_reference: Some("HD-1".into()),
            purpose: None,
        });
        t.bill = Some(BillPart {
            biller: "EVN".into(),
            customer: "PD01".into(),
            customer_name: "NGUYỄN VĂN AN".into(),
            bills: vec![Bill {
                id: "EVN-1".into(),
                period: "2026-11".into(),
                amount: 356_000,
                due_date: "2026-12-20".into(),
            }],
            funding: [Funding::Cash, Funding::Account, Funding::Qr, Funding::Card][n % 4],
        });
        t.limits_held = n.is_multiple_of(2);
        t.limit_keys = vec!["20784/terminal/tho-tang-1".into()];
        t.pays_for = Some("01a2".into());
        t.paid_by = Some("01a3".into());
        t.card_token = Some("c0ffee".into());
        t.teller = Some("Nguyễn Thị Lan".into());
        t
    }

    #[test]
    fn every_field_and_variant_reads_back_as_written() {
        for n in 0..12 {
            let t = full(n);
            let bytes = encode_tx(&t);
            assert_eq!(bytes[0], TX_FORMAT);
            assert_eq!(decode_tx(&bytes[1..]).unwrap(), t, "variant {n}");
        }
        // An id that is not a transaction id is kept whole.
        let mut odd = full(0);
        odd.id = "legacy-7".into();
        assert_eq!(decode_tx(&encode_tx(&odd)[1..]).unwrap(), odd);
    }

    #[test]
    fn a_damaged_or_cut_value_is_an_error_never_another_record() {
        let bytes = encode_tx(&full(3));
        for cut in 1..bytes.len() {
            assert!(decode_tx(&bytes[1..cut]).is_err(), "cut at {cut}");
        }
        for at in 1..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(decode_tx(&flipped[1..]).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_record_takes_a_fraction_of_its_json() {
        // A completed cash-in as the flows write it.
        let mut t = crate::store::test_record(Kind::CashIn);
        t.steps = vec![Step {
            party: Party::Bank("970422".into()),
            action: Action::Credit {
                account: "0123456789".into(),
            },
            amount: 500_000,
            party_reference: Some("MB-1".into()),
        }];
        t.fingerprint = "9f".repeat(32);
        let binary = encode_tx(&t).len();
        let json = serde_json::to_vec(&t).unwrap().len() + 1;
        assert!(binary * 2 < json, "{binary} bytes against {json} as JSON");
    }
}
