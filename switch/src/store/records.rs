//! The switch's record types: what the store keeps, as the flows see it.
//! Every backend stores these and nothing else; how they are keyed and
//! encoded is the backend's business.

use serde::{Deserialize, Serialize};

use crate::adapters::biller::Bill;
use crate::fees::Fee;
use crate::ids::TxId;
use crate::secrets::SealedSecret;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    CashIn,
    CashOut,
    /// A VietQR paid by the payer's bank: to a merchant, or for bills a
    /// teller showed the code for (then it is a `BillPayment`).
    QrPayment,
    BillPayment,
    /// Prepaid airtime bought at a counter (`crate::topup`): its bill part
    /// names the network as biller and the phone number as customer, with
    /// no bills; funded like a bill payment.
    TopUp,
}

/// Who a call of a transaction goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    Bank(String),
    Biller(String),
}

/// What a call asks of its party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Credit {
        account: String,
    },
    /// Debit that the customer authorised at their bank (a QR payment, a
    /// bill paid from their account).
    Debit {
        account: String,
    },
    /// Debit after the bank checked a one-time withdrawal code (the code is
    /// never stored: only the flow that received it holds it).
    DebitWithCode {
        account: String,
    },
    /// Debit of the account behind a card, after the issuer verified the
    /// PIN. Only the masked number is kept: the card number and the PIN
    /// block reach the call from the flow that received them, never from
    /// a stored record (so recovery asks the status, never calls again).
    CardDebit {
        card_masked: String,
    },
    PayBills {
        customer: String,
        bills: Vec<String>,
    },
    /// Airtime for `phone` (ten digits, national form) at a network.
    TopUp {
        phone: String,
    },
}

/// One call to a bank or biller. The calls of a transaction run in order,
/// each only after the one before succeeded; the reference of call `i` is
/// `transaction id | i`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub party: Party,
    pub action: Action,
    /// What the call moves (a debit includes the customer's fee).
    pub amount: u64,
    /// The party's own reference, once it answered.
    pub party_reference: Option<String>,
}

/// How a bill payment is paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Funding {
    /// Cash at the counter: the post office's e-float pays the biller.
    Cash,
    /// A debit of the customer's bank account.
    Account,
    /// A VietQR the teller shows, paid from the customer's banking app.
    Qr,
    /// The customer's bank card and PIN at the counter's terminal.
    Card,
}

/// The bills of a bill payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillPart {
    pub biller: String,
    pub customer: String,
    pub customer_name: String,
    pub bills: Vec<Bill>,
    pub funding: Funding,
}

/// The merchant side of a QR payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantPart {
    pub merchant_id: String,
    /// The code paid (a dynamic code is also held in `TxRecord::qr_id`).
    pub qr_id: String,
    /// The order's reference (62/01), when the code was dynamic.
    pub order_reference: Option<String>,
    pub purpose: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Completed,
    Failed,
    Reversed,
}

impl Status {
    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

/// Where an unfinished transaction stopped: what recovery must resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Recorded; the ledger may hold pending transfers; the bank was not asked.
    Reserved,
    /// The bank may have acted; its outcome decides.
    AtBank,
    /// Cash-out: the bank debited the customer; the teller pays out the cash
    /// and confirms, or cancels, before `confirm_deadline_ms`.
    AwaitingConfirm,
    /// A bill payment by QR: the code is shown, the customer's bank has not
    /// paid it yet (nothing reserved, nothing sent).
    AwaitingPayment,
    /// Decided: the bank's part is being reversed (the job is queued) and the
    /// reservation released. Nothing may post it any more.
    Reversing,
    /// Final.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeParts {
    pub total: u64,
    pub commission: u64,
    pub switch: u64,
}

impl From<Fee> for FeeParts {
    fn from(f: Fee) -> FeeParts {
        FeeParts {
            total: f.total,
            commission: f.commission,
            switch: f.switch,
        }
    }
}

/// A transaction as the switch keeps it. The full account number is kept
/// (the bank needs it for inquiries and reversals) and never shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    pub stage: Stage,
    pub terminal_id: String,
    pub post_office_id: String,
    pub bank_bin: String,
    pub account: String,
    pub account_name: String,
    pub amount: u64,
    pub fee: FeeParts,
    pub client_request_id: String,
    /// SHA-256 of the request's content: a retry must match it.
    pub fingerprint: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bank_reference: Option<String>,
    /// Cash-out: when an unconfirmed payout is cancelled by the switch; a
    /// bill paid by QR: when the unpaid code expires.
    #[serde(default)]
    pub confirm_deadline_ms: Option<i64>,
    /// The calls to banks and billers, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The dynamic QR code this transaction holds: paid at most once (a
    /// static code is never held).
    #[serde(default)]
    pub qr_id: Option<String>,
    #[serde(default)]
    pub merchant: Option<MerchantPart>,
    #[serde(default)]
    pub bill: Option<BillPart>,
    /// The daily totals count this transaction: taken in the same write
    /// that sets this, given back in the same write as a failed or reversed
    /// final record (so exactly once, whatever crashes).
    #[serde(default)]
    pub limits_held: bool,
    /// The totals' keys `limits_held` counts in (`flows::limits`), so that
    /// they are given back where they were taken. Empty in a record from
    /// before the agent limits: then `limits::legacy_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_keys: Vec<String>,
    /// A payment of a bill code a teller showed: the waiting bill payment
    /// it pays. Each attempt is a transaction of its own (its own ledger
    /// legs, its own reversal), so that a declined one leaves the code
    /// payable; it holds the code only while it runs.
    #[serde(default)]
    pub pays_for: Option<String>,
    /// A bill payment shown as a code, once paid: the attempt that paid it.
    #[serde(default)]
    pub paid_by: Option<String>,
    /// Paid by card: a token of the card number (HMAC under a key derived
    /// from the master key), for look-ups; the number itself is not kept.
    #[serde(default)]
    pub card_token: Option<String>,
    /// The teller who served the customer, as the counter said (the
    /// terminal's signature vouches for it, not for who they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teller: Option<String>,
    /// A request the counter took while it could not reach the switch and
    /// forwarded later: when it took it (the customer's cash changed hands
    /// then). Limits and the pilot report count it on that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at_ms: Option<i64>,
}

impl TxRecord {
    /// When the customer was served: the counter's time for a request it
    /// stored while offline, else when the switch recorded it.
    pub fn happened_at_ms(&self) -> i64 {
        self.taken_at_ms.unwrap_or(self.created_at_ms)
    }

    pub fn tx_id(&self) -> TxId {
        TxId::parse(&self.id).expect("stored ids are valid")
    }

    /// The payer's account as it may be shown: masked to its last four, or
    /// a card's number, which is stored masked already (first six, last
    /// four).
    pub fn account_shown(&self) -> String {
        if self.card_token.is_some() {
            self.account.clone()
        } else {
            crate::ids::mask_account(&self.account)
        }
    }

    /// What the transaction holds while it runs, so that nobody else pays
    /// the same thing: its dynamic QR code and its bills. Released when it
    /// fails; kept (as "paid") when it completes.
    pub fn claims(&self) -> Vec<String> {
        // An attempt at a bill code holds the code, not the bills: the
        // waiting bill payment holds those until it is paid or expires.
        if let Some(bill_tx) = &self.pays_for {
            return vec![bill_attempt_claim(bill_tx)];
        }
        let mut out = Vec::new();
        if let Some(qr) = &self.qr_id {
            out.push(order_claim(qr));
        }
        if let Some(b) = &self.bill {
            out.extend(
                b.bills
                    .iter()
                    .map(|x| bill_claim(&b.biller, &b.customer, &x.id)),
            );
        }
        out
    }
}

pub fn order_claim(qr_id: &str) -> String {
    format!("order/{qr_id}")
}

/// Held by the one attempt paying a teller's bill code at a time (kept by
/// the attempt that paid it, taken for good as "closed" when it expires).
pub fn bill_attempt_claim(bill_tx: &str) -> String {
    format!("billqr/{bill_tx}")
}

pub fn bill_claim(biller: &str, customer: &str, bill: &str) -> String {
    format!("bill/{biller}/{customer}/{bill}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostOffice {
    pub id: String,
    pub name: String,
    /// Its number in ledger account ids.
    pub number: u64,
    /// The commune it serves (a [`Commune`]'s id), for the pilot report;
    /// empty: none.
    #[serde(default)]
    pub commune: String,
}

/// One item of a fee collector's catalogue (issue #30).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeItem {
    pub code: String,
    pub name: String,
    /// Whole đồng per unit; 0: free.
    pub unit_price: u64,
    pub unit: String,
    pub legal_basis: String,
}

/// A commune one-stop desk's fees: the catalogue of a fee collector (a
/// merchant with MCC 9399).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeCatalogue {
    pub collector_id: String,
    pub items: Vec<FeeItem>,
}

/// A priced line of a fee request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeLine {
    pub item: FeeItem,
    pub quantity: u32,
    pub amount: u64,
}

/// A dossier's fees, as priced when the desk asked: kept beside its QR
/// order (same id) so that the receipt shows what was paid for even if
/// the catalogue changes later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRequest {
    pub qr_id: String,
    pub collector_id: String,
    pub dossier_code: String,
    pub lines: Vec<FeeLine>,
    pub total: u64,
    pub created_at_ms: i64,
}

/// What a counter's offline outbox held when it last reported (issue #29).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxReport {
    pub terminal_id: String,
    pub reported_at_ms: i64,
    pub queued: u32,
    pub queued_total: u64,
    /// 0: nothing waits.
    pub oldest_taken_at_ms: i64,
    pub forwarded: u64,
    pub refused: u64,
    pub refunds_due: u32,
}

/// A commune (xã, phường, thị trấn): the unit the province's plan reports
/// by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commune {
    /// 1 to 32 of [a-z0-9-].
    pub id: String,
    /// "Thị trấn Thổ Tang".
    pub name: String,
    /// "Huyện Vĩnh Tường".
    pub district: String,
    /// One of the plan's pilot communes.
    pub pilot: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminal {
    pub id: String,
    pub post_office_id: String,
    pub number: u64,
    /// Sealed with the master key (`secrets.rs`); only the auth layer
    /// opens it. Written as `secret_hex`, in the clear, by earlier
    /// versions.
    #[serde(rename = "secret", alias = "secret_hex")]
    pub secret: SealedSecret,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub id: String,
    #[serde(rename = "secret", alias = "secret_hex")]
    pub secret: SealedSecret,
}

/// Someone who signs in to the operations console: an operator, or a
/// bank's settlement staff (who see only their bank).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleUser {
    pub name: String,
    /// `operator` or `bank`.
    pub role: String,
    /// A bank user's bank.
    #[serde(default)]
    pub bank_bin: String,
    /// Argon2id, in the PHC string format (salt and parameters inside).
    pub password_hash: String,
    pub created_at_ms: i64,
    pub created_by: String,
    /// When the password was last set. A console session remembers it and
    /// ends when it changes (0: as created, before resets existed).
    #[serde(default)]
    pub password_set_at_ms: i64,
    /// Set while the user may not sign in: when, by whom, why.
    #[serde(default)]
    pub disabled: Option<Disabled>,
}

/// Who stopped a console user, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
}

/// A terminal's shift: the drawer counted at open and at close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftRecord {
    pub id: String,
    pub terminal_id: String,
    pub opened_at_ms: i64,
    pub opening_cash: u64,
    /// What the ledger held at open, before the opening adjustment.
    pub opening_expected: u64,
    pub closed_at_ms: Option<i64>,
    pub expected_cash: Option<u64>,
    pub counted_cash: Option<u64>,
    pub variance: Option<i64>,
}

impl ShiftRecord {
    pub fn open(
        id: String,
        terminal_id: &str,
        now_ms: i64,
        opening_cash: u64,
        opening_expected: u64,
    ) -> ShiftRecord {
        ShiftRecord {
            id,
            terminal_id: terminal_id.to_string(),
            opened_at_ms: now_ms,
            opening_cash,
            opening_expected,
            closed_at_ms: None,
            expected_cash: None,
            counted_cash: None,
            variance: None,
        }
    }
    pub fn is_open(&self) -> bool {
        self.closed_at_ms.is_none()
    }
}

/// A reversal (a bank call) or cancellation (a biller call) waiting for the
/// party to acknowledge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalJob {
    /// The reference of the call to undo (the key of the job).
    pub reference: String,
    pub party: Party,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
}

/// A merchant, who is paid by QR into their bank account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub city: String,
    /// ISO 18245 merchant category code, four digits.
    pub mcc: String,
    pub bank_bin: String,
    pub account: String,
    #[serde(rename = "secret", alias = "secret_hex")]
    pub secret: SealedSecret,
    /// The commune it trades in, for the pilot report; empty: none.
    #[serde(default)]
    pub commune: String,
    /// When it was provisioned (0: before this was kept).
    #[serde(default)]
    pub created_at_ms: i64,
}

/// A bank's credential for the calls it makes (paying QR codes,
/// settlement reports, statements).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankClient {
    pub bin: String,
    #[serde(rename = "secret", alias = "secret_hex")]
    pub secret: SealedSecret,
}

/// A caller's key an operator revoked: every node refuses it from then on.
/// Kept, never removed: a revoked id is not provisioned again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub key_id: String,
    pub at_ms: i64,
    /// The operator who revoked it.
    pub by: String,
    pub reason: String,
}

/// A caller's secret replaced by a rotation, still accepted until
/// `until_ms` (the grace in which the caller installs the new one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub key_id: String,
    /// The replaced secret, sealed like the current one.
    pub previous: SealedSecret,
    pub until_ms: i64,
}

/// A QR code the switch issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub qr_id: String,
    /// The merchant paid, or for bills the bill payment that waits for it.
    pub merchant_id: Option<String>,
    pub bill_tx: Option<String>,
    /// None for a merchant's static code (the payer enters the amount).
    pub amount: Option<u64>,
    pub reference: Option<String>,
    pub purpose: Option<String>,
    pub payload: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// What a merchant is told of a completed payment. `seq` orders a
/// merchant's notifications; a watcher resumes after the last it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub seq: u64,
    pub merchant_id: String,
    pub transaction_id: String,
    pub qr_id: Option<String>,
    pub order_reference: Option<String>,
    pub amount: u64,
    pub fee: u64,
    pub payer_bank_bin: String,
    pub paid_at_ms: i64,
}

/// A new transaction as a flow asks the store to record it
/// ([`super::Store::create_tx_counted`]).
pub struct NewTx<'a> {
    pub t: &'a TxRecord,
    /// Whose request it is: the idempotency entry is `owner`'s
    /// `request_id`.
    pub owner: &'a str,
    pub request_id: &'a str,
    /// The request's content, hashed: a retry with other content is
    /// refused.
    pub fingerprint: &'a str,
    /// The totals it counts in, each with its most.
    pub limits: &'a [(String, u64)],
    /// The terminal whose shift must be open, if any.
    pub shift: Option<&'a str>,
}

/// How a new transaction's record went in.
#[derive(Debug)]
pub enum Created {
    New,
    /// The request id was used before: the original transaction and the
    /// fingerprint its request had.
    Existing(Box<TxRecord>, String),
    /// Something it must hold is held by another transaction (or expired).
    Claimed(String),
    /// The terminal whose shift it is taken under has none open (closed
    /// meanwhile, say): nothing was written.
    NoOpenShift,
}

pub type StoreError = super::kv::EngineError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowState {
    Open,
    /// The cut-off is taken; the report and settlement transfers are being
    /// made (a crash here is finished by closing again).
    Closing,
    Closed,
    Settled,
}

impl WindowState {
    pub fn label(self) -> &'static str {
        match self {
            WindowState::Open => "open",
            WindowState::Closing => "closing",
            WindowState::Closed => "closed",
            WindowState::Settled => "settled",
        }
    }
}

/// One participant's line in a window's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub participant: String,
    /// `bank`, `biller`, `post_office` or `switch`.
    pub kind: String,
    pub count: u64,
    pub gross_debits: u64,
    pub gross_credits: u64,
    pub fees: u64,
    pub net: i64,
}

/// A closed window's report: fixed at close, hashed, never recomputed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub window_id: u64,
    /// Ledger time after which the window's transfers start (exclusive).
    pub from_timestamp: u64,
    /// Ledger time of the cut-off (exclusive).
    pub cutoff_timestamp: u64,
    pub transactions: u64,
    /// By participant id.
    pub participants: Vec<Position>,
    /// What the window's QR payments brought each commune's fee collector
    /// (issue #30), paid into its budget account at its bank: within its
    /// bank's position above, broken out for the commune's reconciliation.
    /// Absent from reports of windows that had none (their hash unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collectors: Vec<CollectorPosition>,
}

/// A fee collector's takings in a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorPosition {
    pub collector_id: String,
    pub bank_bin: String,
    pub count: u64,
    /// What citizens paid.
    pub gross: u64,
    /// The QR fee kept from it.
    pub fees: u64,
    /// Credited to the budget account: gross - fees.
    pub net: u64,
}

impl Report {
    /// SHA-256 of the canonical JSON (serde's field order, participants
    /// sorted): the same report always hashes the same.
    pub fn sha256(&self) -> String {
        proto::auth::sha256_hex(&serde_json::to_vec(self).expect("serialisable"))
    }

    pub fn csv(positions: &[Position]) -> String {
        let mut out = String::from("participant,kind,count,gross_debits,gross_credits,fees,net\n");
        for p in positions {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                p.participant, p.kind, p.count, p.gross_debits, p.gross_credits, p.fees, p.net
            ));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub id: u64,
    pub state: WindowState,
    pub opened_at_ms: i64,
    /// The previous window's cut-off (0 for the first).
    pub from_timestamp: u64,
    pub cutoff_timestamp: Option<u64>,
    pub closed_at_ms: Option<i64>,
    pub report: Option<Report>,
    pub report_sha256: Option<String>,
    pub settlement_reference: Option<String>,
    pub settled_at_ms: Option<i64>,
}

impl WindowRecord {
    /// The first window, opened when the switch first starts.
    pub fn first(now_ms: i64) -> WindowRecord {
        WindowRecord {
            id: 1,
            state: WindowState::Open,
            opened_at_ms: now_ms,
            from_timestamp: 0,
            cutoff_timestamp: None,
            closed_at_ms: None,
            report: None,
            report_sha256: None,
            settlement_reference: None,
            settled_at_ms: None,
        }
    }
}

/// What a transaction's final write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Finished {
    /// Written: the merchant's notice's number, where it holds one.
    Written { notice_seq: Option<u64> },
    /// Not written: the transaction had been finished already.
    Already,
}
