//! Prepaid airtime at a post-office counter: a Viettel, VinaPhone or
//! MobiFone number topped up by a denomination the network sells, paid in
//! cash (the post office's e-float pays the network), from the customer's
//! account, or by a VietQR the customer pays from their banking app. A
//! top-up is a transaction like a bill payment (its network is reached as a
//! biller of the same code): the same limits, durability, idempotency,
//! status inquiry and cancellation, and the same reconciliation.

use std::sync::Arc;

use crate::caller::Principal;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::bills::{Card, funding_label};
use crate::flows::{Outcome, Switch, check_amount, fingerprint, valid_request_id};
use crate::store::{self, Action, BillPart, Funding, Party, Step};
use crate::topup::Refusal;

fn refused(r: Refusal) -> SwitchError {
    let code = match &r {
        Refusal::UnknownProvider(_) => ErrorCode::UnknownProvider,
        Refusal::NotAPhoneNumber(_) | Refusal::OtherNetwork { .. } => ErrorCode::InvalidPhone,
        Refusal::Denomination { .. } => ErrorCode::InvalidDenomination,
    };
    SwitchError::new(code, r.to_string())
}

impl Switch {
    /// Top up `phone` on `provider` by `amount`.
    #[allow(clippy::too_many_arguments)]
    pub async fn top_up(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        provider: &str,
        phone: &str,
        amount: u64,
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
        let (network, phone) = crate::topup::check(provider, phone, amount).map_err(refused)?;
        let payer = self.check_funding(funding, bin, account, card)?;
        let funding = payer.funding;
        let product = &self.config.topup;
        check_amount(product, amount, "top-up")?;
        let biller = self.billers.get(network.code).cloned().ok_or_else(|| {
            SwitchError::new(
                ErrorCode::UnknownProvider,
                format!("{} is not connected to this switch", network.name),
            )
        })?;
        let amount_text = amount.to_string();
        let fp = fingerprint(&[
            "topup",
            network.code,
            &phone,
            &amount_text,
            funding_label(funding),
            &payer.bin,
            payer.card_token.as_deref().unwrap_or(&payer.account),
        ]);
        if let Some(existing) = self.earlier_request(&p.id, request_id, &fp)? {
            return Ok(existing);
        }
        let what = if funding == Funding::Cash {
            crate::flows::engine::Deferrable::TopUp
        } else {
            crate::flows::engine::Deferrable::Never
        };
        let taken_at_ms = self.offline_at(taken, what)?;
        // Cash taken offline was taken under the shift then open; cash
        // taken now needs the teller's shift open (checked in the write
        // that records the top-up).
        let under_shift = funding == Funding::Cash && taken_at_ms.is_none();
        let fee = crate::fees::fee(&product.fee, amount);
        let sell = Step {
            party: Party::Biller(biller.code.clone()),
            action: Action::TopUp {
                phone: phone.clone(),
            },
            amount,
            party_reference: None,
        };
        let steps = payer.steps(amount + fee.total, sell);
        let mut rec = self.new_record(
            p,
            &post_office_id,
            store::Kind::TopUp,
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
        rec.bill = Some(BillPart {
            biller: biller.code.clone(),
            customer: phone.clone(),
            customer_name: String::new(),
            bills: Vec::new(),
            funding,
        });
        if funding != Funding::Qr {
            return self
                .start(rec, &p.id, request_id, &fp, payer.presented(), under_shift)
                .await;
        }
        let purpose = format!("NAP {} {phone}", biller.code);
        self.show_code(p, request_id, &fp, rec, &biller, &phone, purpose)
            .await
    }
}
