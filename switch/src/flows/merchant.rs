//! Merchant QR payments: issuing dynamic and static VietQR codes, and a
//! payer's bank paying one. A payment is a transaction like any other (see
//! `flows`): debit the payer at their bank, credit the merchant at theirs,
//! post; a refusal or an unknown outcome of either call is undone through
//! the same durable reversal queue. A code shown for bills at a counter is
//! paid here too and runs as that bill payment.

use std::sync::Arc;

use ring::rand::SecureRandom;

use crate::caller::{Principal, Role};
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{
    Outcome, Switch, check_amount, fingerprint, storage, valid_account, valid_request_id,
};
use crate::store::{self, Action, MerchantPart, Order, Party, Stage, Status, Step};

/// The longest a dynamic code may live.
pub const QR_TTL_MAX_MS: u64 = 24 * 3_600 * 1_000;

/// A new QR id: `Q` and 20 hex digits (80 random bits), short enough for
/// the code's reference label (62/05, at most 25 characters).
pub fn new_qr_id(rng: &ring::rand::SystemRandom) -> String {
    let mut b = [0u8; 10];
    rng.fill(&mut b).expect("the system random source works");
    format!("Q{}", hex::encode(b).to_uppercase())
}

/// The id of a merchant's static code (stable: printed once, on a sticker).
pub fn static_qr_id(merchant_id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, merchant_id.as_bytes());
    format!("S{}", hex::encode(&d.as_ref()[..10]).to_uppercase())
}

fn qr_error(e: qr::QrError) -> SwitchError {
    SwitchError::new(
        ErrorCode::QrInvalid,
        format!("the QR code is not valid: {e}"),
    )
}

/// A merchant's static code, as issued when it is provisioned.
pub fn static_payload(m: &store::Merchant) -> Result<String, SwitchError> {
    let id = static_qr_id(&m.id);
    let mut spec = qr::Spec::new(&m.bank_bin, &m.account);
    spec.mcc = Some(&m.mcc);
    spec.merchant_name = Some(&m.name);
    spec.merchant_city = Some(&m.city);
    spec.reference = Some(&id);
    qr::encode(&spec).map_err(qr_error)
}

fn printable(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && s.chars().all(|c| (' '..='~').contains(&c))
}

impl Switch {
    fn merchant_of(&self, p: &Principal) -> Result<store::Merchant, SwitchError> {
        if p.role != Role::Merchant {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a merchant may do this",
            ));
        }
        self.store
            .merchant(&p.id)
            .map_err(storage)?
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownMerchant, "no such merchant"))
    }

    /// A dynamic code for one order.
    pub fn create_qr(
        &self,
        p: &Principal,
        request_id: &str,
        amount: u64,
        reference: &str,
        purpose: &str,
        expires_in_ms: u64,
    ) -> Result<Order, SwitchError> {
        let m = self.merchant_of(p)?;
        if !valid_request_id(request_id) {
            return Err(SwitchError::invalid(
                "client_request_id must be 1 to 64 of [A-Za-z0-9._:-]",
            ));
        }
        if !printable(reference, 25) {
            return Err(SwitchError::invalid(
                "reference must be 1 to 25 printable ASCII characters",
            ));
        }
        if !purpose.is_empty() && !printable(purpose, 25) {
            return Err(SwitchError::invalid(
                "purpose must be at most 25 printable ASCII characters",
            ));
        }
        check_amount(&self.config.qr, amount, "QR payment")?;
        if expires_in_ms > QR_TTL_MAX_MS {
            return Err(SwitchError::invalid("expires_in_s must be at most 86400"));
        }
        let fp = fingerprint(&["qr", &amount.to_string(), reference, purpose]);
        if let Some((qr_id, original)) = self
            .store
            .order_request(&m.id, request_id)
            .map_err(storage)?
        {
            if original != fp {
                return Err(SwitchError::new(
                    ErrorCode::RequestIdReused,
                    format!("client_request_id {request_id} was used for another request"),
                ));
            }
            return self
                .store
                .order(&qr_id)
                .map_err(storage)?
                .ok_or_else(|| storage("an order request names no order"));
        }
        let qr_id = new_qr_id(&self.rng);
        let mut spec = qr::Spec::new(&m.bank_bin, &m.account);
        spec.amount = Some(amount);
        spec.mcc = Some(&m.mcc);
        spec.merchant_name = Some(&m.name);
        spec.merchant_city = Some(&m.city);
        spec.bill_number = Some(reference);
        spec.reference = Some(&qr_id);
        spec.purpose = (!purpose.is_empty()).then_some(purpose);
        let payload = qr::encode(&spec).map_err(qr_error)?;
        let now = now_ms();
        let ttl = if expires_in_ms == 0 {
            self.config.qr_ttl_ms
        } else {
            expires_in_ms
        };
        let order = Order {
            qr_id,
            merchant_id: Some(m.id.clone()),
            bill_tx: None,
            amount: Some(amount),
            reference: Some(reference.to_string()),
            purpose: (!purpose.is_empty()).then(|| purpose.to_string()),
            payload,
            created_at_ms: now,
            expires_at_ms: Some(now + ttl as i64),
        };
        match self
            .store
            .put_order_once(&order, &m.id, request_id, &fp)
            .map_err(storage)?
        {
            None => Ok(order),
            // A concurrent retry won: answer its code.
            Some(qr_id) => self
                .store
                .order(&qr_id)
                .map_err(storage)?
                .ok_or_else(|| storage("an order request names no order")),
        }
    }

    /// A merchant's notices numbered after `after`, oldest first, at most
    /// `limit`.
    pub fn payments_after(
        &self,
        merchant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<store::Payment>, SwitchError> {
        self.store
            .payments_after(merchant, after, limit)
            .map_err(storage)
    }

    /// A merchant's notices numbered before `before`, newest first, at
    /// most `limit`.
    pub fn payments_before(
        &self,
        merchant: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<store::Payment>, SwitchError> {
        self.store
            .payments_before(merchant, before, limit)
            .map_err(storage)
    }

    /// Whether notices are numbered in the shared store's commit order
    /// (several nodes: every stored one may be shown), rather than
    /// published by this process in number order once durable.
    pub fn notices_numbered_by_store(&self) -> bool {
        self.store.is_shared()
    }

    /// The payload of the QR code `qr_id`, if stored.
    pub fn qr_payload(&self, qr_id: &str) -> Result<Option<String>, SwitchError> {
        Ok(self
            .store
            .order(qr_id)
            .map_err(storage)?
            .map(|order| order.payload))
    }

    /// The merchant's static code.
    pub fn static_qr(&self, p: &Principal) -> Result<Order, SwitchError> {
        let m = self.merchant_of(p)?;
        let qr_id = static_qr_id(&m.id);
        self.store
            .order(&qr_id)
            .map_err(storage)?
            .ok_or_else(|| storage("a merchant's static code is missing"))
    }

    /// A payer's bank pays a scanned code for its customer `payer_account`.
    pub async fn pay_qr(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        payload: &str,
        payer_account: &str,
        amount: u64,
    ) -> Outcome {
        let Role::Bank = p.role else {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a bank may pay a QR code for its customer",
            ));
        };
        let payer_bin = p.id.as_str();
        if !valid_request_id(request_id) {
            return Err(SwitchError::invalid(
                "client_request_id must be 1 to 64 of [A-Za-z0-9._:-]",
            ));
        }
        if !valid_account(payer_account) {
            return Err(SwitchError::invalid(
                "payer_account must be 6 to 19 letters or digits",
            ));
        }
        if payload.len() > 512 {
            return Err(SwitchError::new(
                ErrorCode::QrInvalid,
                "the QR code is not valid: longer than 512 bytes",
            ));
        }
        let code = qr::decode(payload).map_err(qr_error)?;
        if self.routes.get(code.bin).is_none() {
            return Err(SwitchError::new(
                ErrorCode::UnknownBank,
                format!(
                    "the code names BIN {}, which this switch does not route",
                    code.bin
                ),
            ));
        }
        let unknown = || {
            SwitchError::new(
                ErrorCode::QrUnknown,
                "this code was not issued by this switch",
            )
        };
        let qr_id = code.reference.ok_or_else(unknown)?.to_string();
        let order = self
            .store
            .order(&qr_id)
            .map_err(storage)?
            .ok_or_else(unknown)?;
        if order.payload != payload {
            return Err(SwitchError::new(
                ErrorCode::QrInvalid,
                "the code differs from the one issued (tampered?)",
            ));
        }
        // A retry answers the original outcome, whatever happened since.
        let fp = fingerprint(&["pay_qr", payload, payer_account, &amount.to_string()]);
        if let Some(existing) = self.earlier_request(&p.id, request_id, &fp)? {
            return Ok(existing);
        }
        let amount = match order.amount {
            Some(due) if amount == 0 || amount == due => due,
            Some(due) => {
                return Err(SwitchError::new(
                    ErrorCode::AmountMismatch,
                    format!("the code is for {due} VND, not {amount}"),
                ));
            }
            None if amount == 0 => {
                return Err(SwitchError::invalid("amount is required for a static code"));
            }
            None => amount,
        };
        // A bill code says first whether it is paid, then whether it expired.
        if let Some(bill_tx) = &order.bill_tx {
            return self
                .pay_bill_qr(p, request_id, &fp, bill_tx, payer_account, amount)
                .await;
        }
        if order.expires_at_ms.is_some_and(|e| e <= now_ms()) {
            return Err(SwitchError::new(
                ErrorCode::QrExpired,
                "the code has expired",
            ));
        }
        let merchant_id = order.merchant_id.as_deref().ok_or_else(unknown)?;
        let m = self
            .store
            .merchant(merchant_id)
            .map_err(storage)?
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownMerchant, "no such merchant"))?;
        let product = &self.config.qr;
        check_amount(product, amount, "QR payment")?;
        let fee = crate::fees::fee(&product.fee, amount);
        let steps = vec![
            Step {
                party: Party::Bank(payer_bin.to_string()),
                action: Action::Debit {
                    account: payer_account.to_string(),
                },
                amount,
                party_reference: None,
            },
            Step {
                party: Party::Bank(m.bank_bin.clone()),
                action: Action::Credit {
                    account: m.account.clone(),
                },
                amount: amount - fee.total,
                party_reference: None,
            },
        ];
        let mut rec = self.new_record(
            p,
            "",
            store::Kind::QrPayment,
            request_id,
            payer_bin,
            payer_account,
            amount,
            fee,
            fp,
            steps,
        );
        let dynamic = order.amount.is_some();
        rec.qr_id = dynamic.then(|| order.qr_id.clone());
        rec.merchant = Some(MerchantPart {
            merchant_id: m.id.clone(),
            qr_id: order.qr_id.clone(),
            order_reference: order.reference.clone(),
            purpose: order.purpose.clone(),
        });
        let fp = rec.fingerprint.clone();
        self.start(rec, &p.id, request_id, &fp, None, false).await
    }

    /// Pay bills a teller showed as a QR code. Each payment of the code is
    /// a transaction of its own (a debit of the payer, then the payment at
    /// the biller) that holds the code while it runs: a declined or
    /// reversed one lets it go, so the customer can pay again from another
    /// account; the one that completes completes the waiting bill payment
    /// in the same write. The bills stay held by the bill payment
    /// throughout.
    async fn pay_bill_qr(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        fp: &str,
        bill_tx: &str,
        payer_account: &str,
        amount: u64,
    ) -> Outcome {
        let id = crate::ids::TxId::parse(bill_tx)
            .ok_or_else(|| storage("a bill order names a bad id"))?;
        let Some(bill_rec) = self.store.get_tx(id).map_err(storage)? else {
            return Err(storage("a bill order names no transaction"));
        };
        if bill_rec.stage != Stage::AwaitingPayment {
            return Err(spent_bill_code(&bill_rec));
        }
        if bill_rec.confirm_deadline_ms.is_some_and(|e| e <= now_ms()) {
            return Err(SwitchError::new(
                ErrorCode::QrExpired,
                "the code has expired",
            ));
        }
        let bill = bill_rec
            .bill
            .clone()
            .ok_or_else(|| storage("a bill order without bills"))?;
        let total = bill_rec.amount + bill_rec.fee.total;
        if amount != total {
            return Err(SwitchError::new(
                ErrorCode::AmountMismatch,
                format!("the code is for {total} VND, not {amount}"),
            ));
        }
        let steps = vec![
            Step {
                party: Party::Bank(p.id.clone()),
                action: Action::Debit {
                    account: payer_account.to_string(),
                },
                amount,
                party_reference: None,
            },
            Step {
                party: Party::Biller(bill.biller.clone()),
                action: if bill_rec.kind == store::Kind::TopUp {
                    Action::TopUp {
                        phone: bill.customer.clone(),
                    }
                } else {
                    Action::PayBills {
                        customer: bill.customer.clone(),
                        bills: bill.bills.iter().map(|b| b.id.clone()).collect(),
                    }
                },
                amount: bill_rec.amount,
                party_reference: None,
            },
        ];
        let fee = crate::fees::Fee {
            total: bill_rec.fee.total,
            commission: bill_rec.fee.commission,
            switch: bill_rec.fee.switch,
        };
        let mut rec = self.new_record(
            p,
            &bill_rec.post_office_id,
            bill_rec.kind,
            request_id,
            &p.id,
            payer_account,
            bill_rec.amount,
            fee,
            fp.to_string(),
            steps,
        );
        // The counter that showed the code earns its commission and lists
        // the attempt beside its bill payment.
        rec.terminal_id = bill_rec.terminal_id.clone();
        rec.account_name = bill_rec.account_name.clone();
        rec.bill = Some(bill);
        rec.pays_for = Some(bill_rec.id.clone());
        match self.start(rec, &p.id, request_id, fp, None, false).await {
            Err(e) if e.code == ErrorCode::QrBeingPaid => Err(self.why_code_is_held(id, e)?),
            other => other,
        }
    }

    /// Why an attempt could not take a bill code: it expired, it was paid,
    /// or another attempt is under way (`held`).
    fn why_code_is_held(
        &self,
        bill_tx: crate::ids::TxId,
        held: SwitchError,
    ) -> Result<SwitchError, SwitchError> {
        let claim = store::bill_attempt_claim(&bill_tx.to_string());
        if self.store.claim_holder(&claim).map_err(storage)?.as_deref() == Some(&b"closed"[..]) {
            return Ok(SwitchError::new(
                ErrorCode::QrExpired,
                "the code has expired",
            ));
        }
        match self.store.get_tx(bill_tx).map_err(storage)? {
            Some(bill_rec) if bill_rec.stage == Stage::Done => Ok(spent_bill_code(&bill_rec)),
            _ => Ok(held),
        }
    }
}

/// Why a bill code can no longer be paid, so that the payer's bank can tell
/// its customer what to do.
fn spent_bill_code(rec: &store::TxRecord) -> SwitchError {
    let expired = rec.error_code.as_deref() == Some(ErrorCode::QrExpired.as_str());
    match rec.status {
        Status::Failed if expired => SwitchError::new(ErrorCode::QrExpired, "the code has expired"),
        Status::Failed | Status::Reversed => SwitchError::new(
            ErrorCode::QrAlreadyPaid,
            "the bill payment this code was shown for failed; the counter can show a new code",
        ),
        Status::Completed => {
            SwitchError::new(ErrorCode::QrAlreadyPaid, "this QR code is paid already")
        }
        Status::Pending => SwitchError::new(ErrorCode::QrBeingPaid, "this QR code is being paid"),
    }
}
