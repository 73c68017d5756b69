//! Bills at a post-office counter: inquiry at the biller, then payment
//! funded by cash (the post office's e-float pays the biller, the drawer
//! takes the cash), by a debit of the customer's account, or by a VietQR the
//! customer pays from their banking app. A payment is a transaction like
//! any other (`flows`): its bills are held while it runs, so that two
//! counters cannot pay the same bill; an unknown outcome at the biller is
//! resolved by status inquiry, then cancellation and refund.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::biller::{Biller, BillerError, BillerReject, Statement};
use crate::caller::Principal;
use crate::clock::{monotonic_ms, now_ms};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::merchant::new_qr_id;
use crate::flows::{
    Outcome, Presented, Switch, biller_outcome, check_amount, fingerprint, storage, valid_account,
    valid_bin, valid_request_id,
};
use crate::store::{self, Action, BillPart, Funding, Order, Party, Stage, Status, Step};

pub(crate) fn funding_label(f: Funding) -> &'static str {
    match f {
        Funding::Cash => "cash",
        Funding::Account => "account",
        Funding::Qr => "qr",
        Funding::Card => "card",
    }
}

/// A bank card presented at the counter's terminal, its PIN opened at the
/// edge from the terminal's PIN block. Never stored, never printed.
pub struct Card {
    pub pan: proto::pin::Pan,
    pub pin: proto::pin::Pin,
}

/// Who pays a counter payment, checked.
pub(crate) struct Payer {
    pub funding: Funding,
    /// The paying bank (account or card funding).
    pub bin: String,
    /// The account, or the card's masked number.
    pub account: String,
    pub card_token: Option<String>,
    pub card: Option<Card>,
}

impl Payer {
    /// The calls of a payment whose last is `then` (`debit` taken from the
    /// payer first, fee included); none yet for a code still to be paid.
    pub(crate) fn steps(&self, debit: u64, then: Step) -> Vec<Step> {
        let first = |action| Step {
            party: Party::Bank(self.bin.clone()),
            action,
            amount: debit,
            party_reference: None,
        };
        match self.funding {
            Funding::Cash => vec![then],
            Funding::Account => vec![
                first(Action::Debit {
                    account: self.account.clone(),
                }),
                then,
            ],
            Funding::Card => vec![
                first(Action::CardDebit {
                    card_masked: self.account.clone(),
                }),
                then,
            ],
            // The payer's bank is known when the code is paid.
            Funding::Qr => Vec::new(),
        }
    }

    /// What the calls need that no record keeps.
    pub(crate) fn presented(self) -> Option<Presented> {
        self.card
            .map(|Card { pan, pin }| Presented::Card { pan, pin })
    }
}

fn valid_code(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Switch {
    fn biller(&self, code: &str) -> Result<Arc<Biller>, SwitchError> {
        if !valid_code(code, 16) {
            return Err(SwitchError::invalid(
                "biller must be 1 to 16 letters or digits",
            ));
        }
        self.billers
            .get(code)
            .cloned()
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownBiller, format!("no biller {code}")))
    }

    /// A customer's name and unpaid bills, from the biller.
    pub async fn inquire_bills(
        &self,
        p: &Principal,
        biller: &str,
        customer: &str,
    ) -> Result<(Arc<Biller>, Statement), SwitchError> {
        Switch::teller_post_office(p)?;
        let biller = self.biller(biller)?;
        if !valid_code(customer, 20) {
            return Err(SwitchError::invalid(
                "customer must be 1 to 20 letters or digits",
            ));
        }
        let Some(permit) = biller.breaker.try_call(monotonic_ms()) else {
            return Err(SwitchError::new(
                ErrorCode::BillerUnavailable,
                format!(
                    "{} keeps failing; calls are paused, try again later",
                    biller.name
                ),
            ));
        };
        let timeout = Duration::from_millis(self.config.bank_timeout_ms);
        let answer = tokio::time::timeout(timeout, biller.adapter.inquire(customer)).await;
        permit.record(biller_outcome(&answer), monotonic_ms());
        match answer {
            Ok(Ok(s)) => Ok((biller, s)),
            Ok(Err(BillerError::Rejected {
                reason: BillerReject::CustomerNotFound,
                ..
            })) => Err(SwitchError::new(
                ErrorCode::BillCustomerNotFound,
                format!("{} has no customer {customer}", biller.name),
            )),
            Ok(Err(BillerError::Rejected { message, .. })) => {
                Err(SwitchError::new(ErrorCode::BillerRejected, message))
            }
            _ => Err(SwitchError::new(
                ErrorCode::BillerUnavailable,
                format!("{} did not answer; try again", biller.name),
            )),
        }
    }

    /// Pay `bill_ids` (every due bill when empty) of `customer` at `biller`.
    #[allow(clippy::too_many_arguments)]
    pub async fn pay_bills(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        biller: &str,
        customer: &str,
        bill_ids: &[String],
        funding: Option<Funding>,
        bin: &str,
        account: &str,
        card: Option<Card>,
        taken: crate::flows::engine::Taken<'_>,
    ) -> Outcome {
        let teller = crate::flows::engine::teller_name(taken.teller)?;
        let post_office_id = Switch::teller_post_office(p)?.to_string();
        if !valid_request_id(request_id) {
            return Err(SwitchError::invalid(
                "client_request_id must be 1 to 64 of [A-Za-z0-9._:-]",
            ));
        }
        let payer = self.check_funding(funding, bin, account, card)?;
        let funding = payer.funding;
        if bill_ids.len() > 24 || bill_ids.iter().any(|b| !(1..=40).contains(&b.len())) {
            return Err(SwitchError::invalid(
                "bill_ids: at most 24 ids of 1 to 40 characters",
            ));
        }
        let fp = fingerprint(&[
            "bill",
            biller,
            customer,
            &bill_ids.join(","),
            funding_label(funding),
            &payer.bin,
            payer.card_token.as_deref().unwrap_or(&payer.account),
        ]);
        // A retry answers the original outcome (the bills are not due any
        // more, so it must not be asked of the biller again).
        if let Some(existing) = self.earlier_request(&p.id, request_id, &fp)? {
            return Ok(existing);
        }
        let what = if funding == Funding::Cash {
            crate::flows::engine::Deferrable::CashBills
        } else {
            crate::flows::engine::Deferrable::Never
        };
        let taken_at_ms = self.offline_at(taken, what)?;
        // Cash taken offline was taken under the shift then open; cash
        // taken now needs the teller's shift open (checked in the write
        // that records the payment).
        let under_shift = funding == Funding::Cash && taken_at_ms.is_none();
        let (biller, statement) = self.inquire_bills(p, biller, customer).await?;
        if statement.bills.is_empty() {
            return Err(SwitchError::new(
                ErrorCode::BillNotDue,
                format!("nothing is due for {customer}"),
            ));
        }
        let chosen: Vec<_> = if bill_ids.is_empty() {
            statement.bills.clone()
        } else {
            let mut chosen = Vec::new();
            for id in bill_ids {
                let bill = statement
                    .bills
                    .iter()
                    .find(|b| &b.id == id)
                    .ok_or_else(|| {
                        SwitchError::new(ErrorCode::BillNotDue, format!("bill {id} is not due"))
                    })?;
                if !chosen.contains(bill) {
                    chosen.push(bill.clone());
                }
            }
            chosen
        };
        if !biller.partial_allowed && chosen.len() != statement.bills.len() {
            return Err(SwitchError::new(
                ErrorCode::PartialPaymentNotAllowed,
                format!("{} takes every due bill together", biller.name),
            ));
        }
        let amount: u64 = chosen.iter().map(|b| b.amount).sum();
        let product = &self.config.bill;
        check_amount(product, amount, "bill payment")?;
        let fee = crate::fees::fee(&product.fee, amount);
        let pay = Step {
            party: Party::Biller(biller.code.clone()),
            action: Action::PayBills {
                customer: customer.to_string(),
                bills: chosen.iter().map(|b| b.id.clone()).collect(),
            },
            amount,
            party_reference: None,
        };
        let steps = payer.steps(amount + fee.total, pay);
        let mut rec = self.new_record(
            p,
            &post_office_id,
            store::Kind::BillPayment,
            request_id,
            &payer.bin,
            &payer.account,
            amount,
            fee,
            fp.clone(),
            steps,
        );
        rec.card_token = payer.card_token.clone();
        rec.teller = teller;
        rec.taken_at_ms = taken_at_ms;
        rec.account_name = statement.customer_name.clone();
        rec.bill = Some(BillPart {
            biller: biller.code.clone(),
            customer: customer.to_string(),
            customer_name: statement.customer_name,
            bills: chosen,
            funding,
        });
        if funding != Funding::Qr {
            return self
                .start(rec, &p.id, request_id, &fp, payer.presented(), under_shift)
                .await;
        }
        let purpose = format!("HD {} {}", biller.code, customer);
        self.show_code(p, request_id, &fp, rec, &biller, customer, purpose)
            .await
    }

    /// How a counter payment (bills, a top-up) is funded, checked: a bank
    /// account names a routed bank, a card's first six digits do; the
    /// others name none.
    pub(crate) fn check_funding(
        &self,
        funding: Option<Funding>,
        bin: &str,
        account: &str,
        card: Option<Card>,
    ) -> Result<Payer, SwitchError> {
        let funding = funding
            .ok_or_else(|| SwitchError::invalid("funding must be cash, account, qr or card"))?;
        if funding != Funding::Account && (!bin.is_empty() || !account.is_empty()) {
            return Err(SwitchError::invalid(
                "bank_bin and account are only for account funding",
            ));
        }
        if funding != Funding::Card && card.is_some() {
            return Err(SwitchError::invalid(
                "card_number and pin_block are only for card funding",
            ));
        }
        let (bin, account, card_token) = match (funding, &card) {
            (Funding::Card, None) => {
                return Err(SwitchError::invalid(
                    "card funding needs card_number and pin_block",
                ));
            }
            (Funding::Card, Some(c)) => (
                c.pan.bin().to_string(),
                c.pan.masked(),
                Some(c.pan.token(self.master_key.card_token_key().expose())),
            ),
            (Funding::Account, _) if !valid_bin(bin) => {
                return Err(SwitchError::invalid("bank_bin must be six digits"));
            }
            (Funding::Account, _) if !valid_account(account) => {
                return Err(SwitchError::invalid(
                    "account must be 6 to 19 letters or digits",
                ));
            }
            _ => (bin.to_string(), account.to_string(), None),
        };
        // The paying bank (an account's, a card's issuer) must be routed.
        if matches!(funding, Funding::Account | Funding::Card) && self.routes.get(&bin).is_none() {
            let what = if funding == Funding::Card {
                "issues cards beginning"
            } else {
                "with BIN"
            };
            return Err(SwitchError::new(
                ErrorCode::UnknownBank,
                format!("no bank {what} {bin}"),
            ));
        }
        Ok(Payer {
            funding,
            bin,
            account,
            card_token,
            card,
        })
    }

    /// Show a code for `rec`'s amount and fee, paid to `biller`'s
    /// collection account: the transaction waits (holding its bills) until
    /// a payment of the code completes it or the code expires.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn show_code(
        &self,
        p: &Principal,
        request_id: &str,
        fp: &str,
        mut rec: store::TxRecord,
        biller: &Biller,
        bill_number: &str,
        purpose: String,
    ) -> Outcome {
        let qr_id = new_qr_id(&self.rng);
        let total = rec.amount + rec.fee.total;
        let mut spec = qr::Spec::new(&biller.collection_bin, &biller.collection_account);
        spec.amount = Some(total);
        spec.bill_number = Some(bill_number);
        spec.reference = Some(&qr_id);
        spec.purpose = Some(&purpose);
        spec.merchant_name = Some(&biller.code);
        spec.merchant_city = Some("VINH PHUC");
        spec.mcc = Some("4900");
        let payload = qr::encode(&spec).map_err(|e| {
            SwitchError::invalid(format!("cannot draw a code for this payment: {e}"))
        })?;
        let now = now_ms();
        let expires = now + self.config.qr_ttl_ms as i64;
        rec.stage = Stage::AwaitingPayment;
        rec.qr_id = Some(qr_id.clone());
        rec.confirm_deadline_ms = Some(expires);
        let order = Order {
            qr_id,
            merchant_id: None,
            bill_tx: Some(rec.id.clone()),
            amount: Some(total),
            reference: Some(bill_number.to_string()),
            purpose: Some(purpose),
            payload,
            created_at_ms: now,
            expires_at_ms: Some(expires),
        };
        // The order first: a code that names a transaction not yet recorded
        // is refused as unknown until it is.
        self.store.put_order(&order).map_err(storage)?;
        match self
            .store
            .create_tx(&rec, &p.id, request_id, fp)
            .map_err(storage)?
        {
            store::Created::New => {}
            store::Created::Existing(existing, _) => {
                // Acknowledged to the retry: durable first.
                self.store.durable().await.map_err(storage)?;
                return Ok(*existing);
            }
            store::Created::NoOpenShift => unreachable!("a code is shown under no shift"),
            store::Created::Claimed(_) => {
                return Err(SwitchError::new(
                    ErrorCode::BillAlreadyPaid,
                    "a bill is paid already or being paid at this moment",
                ));
            }
        }
        self.store.durable().await.map_err(storage)?;
        Ok(rec)
    }

    /// Fail bill payments whose code was not paid in time (the bills are
    /// released). The code is taken for good first, unless an attempt at
    /// it is running: that one decides (a completed attempt completes the
    /// bill payment; a failed one lets the code go and the next pass
    /// expires it).
    pub async fn expire_bill_qrs(&self) -> Result<usize, SwitchError> {
        let now = now_ms();
        let mut n = 0;
        for rec in self.store.unfinished().map_err(storage)? {
            if rec.stage != Stage::AwaitingPayment
                || rec.confirm_deadline_ms.is_none_or(|d| d > now)
            {
                continue;
            }
            let claim = store::bill_attempt_claim(&rec.id);
            let closed = match self.store.claim_holder(&claim).map_err(storage)? {
                Some(holder) => holder == b"closed",
                None => self.store.close_claim(&claim).map_err(storage)?,
            };
            if !closed {
                continue;
            }
            // Read again: closed before a crash, or by another node, it
            // may be finished already.
            let Some(mut rec) = self
                .store
                .get_tx(rec.tx_id())
                .map_err(storage)?
                .filter(|r| r.stage == Stage::AwaitingPayment)
            else {
                continue;
            };
            rec.status = Status::Failed;
            rec.stage = Stage::Done;
            rec.updated_at_ms = now;
            rec.confirm_deadline_ms = None;
            rec.error_code = Some(ErrorCode::QrExpired.as_str().to_string());
            rec.error_message = Some("the code was not paid in time".to_string());
            let stats = self.report_contributions(&rec, None)?;
            // Finished already (paid meanwhile, or expired by another
            // node): nothing to count.
            if self
                .store
                .finish_tx(&rec, None, &[], None, &stats)
                .map_err(storage)?
                == store::Finished::Already
            {
                continue;
            }
            self.store.durable().await.map_err(storage)?;
            n += 1;
        }
        Ok(n)
    }
}
