//! The counter's calls to the switch: signed with the terminal's secret,
//! which never leaves this process (the browser talks only to us).

use std::time::Duration;

use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::bills_client::BillsClient;
use proto::v1::teller_client::TellerClient;
use tonic::transport::Channel;

use crate::client::{Failure, Profile, retryable};

/// Attempts of a call whose answer may have been lost: the same request id
/// each time, so that a retry returns the first outcome. Two: a teller
/// waits for the second, and what may wait goes to the outbox after it.
const ATTEMPTS_MAX: u32 = 2;
/// A switch that does not accept the connection this fast is taken as
/// unreachable (the counter then works offline where it may).
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// The longest a call may take (a bank's or biller's timeouts fit in it).
const CALL_TIMEOUT_MS: u64 = 30_000;

pub struct Link {
    credentials: Credentials,
    channel: Channel,
}

/// Whether a failure says the switch was not reached (or its answer was
/// lost), rather than that it refused: a transport error carries no
/// business code.
pub fn unreachable(f: &Failure) -> bool {
    matches!(
        f.code.as_str(),
        "unavailable" | "deadline_exceeded" | "unknown" | "cancelled" | "client"
    )
}

/// A call with retries on transport failures (re-signed each time: fresh
/// time and nonce, the same request).
macro_rules! call {
    ($self:ident, $client:ident, $method:ident, $path:literal, $msg:expr) => {{
        let mut client = $client::new($self.channel.clone());
        let msg = $msg;
        let mut attempt = 0;
        loop {
            match client
                .$method($self.credentials.sign($path, msg.clone()))
                .await
            {
                Ok(r) => break Ok::<_, Failure>(r.into_inner()),
                Err(s) if retryable(&s) && attempt + 1 < ATTEMPTS_MAX => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(s) => break Err(Failure::from(s)),
            }
        }
    }};
}

impl Link {
    /// A link that connects on first use: the counter starts offline too.
    pub fn open(profile: &Profile) -> Result<Link, String> {
        Ok(Link {
            credentials: profile.credentials()?,
            channel: profile.connect_lazy(CONNECT_TIMEOUT_MS, CALL_TIMEOUT_MS)?,
        })
    }

    /// The key the switch signs this terminal's offline policy under
    /// (derived from it).
    pub fn pin_key(&self) -> proto::pin::PinKey {
        self.credentials.pin_key()
    }

    pub async fn report_outbox(&self, r: pb::OutboxReport) -> Result<pb::OutboxReport, Failure> {
        call!(
            self,
            TellerClient,
            report_outbox,
            "/paymentswitch.v1.Teller/ReportOutbox",
            r
        )
    }

    pub async fn offline_policy(&self) -> Result<pb::OfflinePolicy, Failure> {
        call!(
            self,
            TellerClient,
            get_offline_policy,
            "/paymentswitch.v1.Teller/GetOfflinePolicy",
            pb::GetOfflinePolicyRequest {}
        )
    }

    /// The card number and PIN block for a card payment: the PIN enciphered
    /// here, at once, under the terminal's PIN key.
    pub fn card(&self, card: &str, pin: &str) -> Result<(String, String), String> {
        self.credentials.card(card, pin)
    }

    pub async fn name_inquiry(
        &self,
        bank_bin: &str,
        account: &str,
    ) -> Result<pb::NameInquiryResponse, Failure> {
        let msg = pb::NameInquiryRequest {
            bank_bin: bank_bin.to_string(),
            account: account.to_string(),
        };
        call!(
            self,
            TellerClient,
            name_inquiry,
            "/paymentswitch.v1.Teller/NameInquiry",
            msg
        )
    }

    pub async fn quote_fee(
        &self,
        kind: pb::TxKind,
        amount: u64,
    ) -> Result<pb::QuoteFeeResponse, Failure> {
        let msg = pb::QuoteFeeRequest {
            kind: kind as i32,
            amount,
        };
        call!(
            self,
            TellerClient,
            quote_fee,
            "/paymentswitch.v1.Teller/QuoteFee",
            msg
        )
    }

    pub async fn limits(
        &self,
        customer: Option<(&str, &str)>,
    ) -> Result<pb::GetLimitsResponse, Failure> {
        let (bank_bin, account) = customer.unwrap_or_default();
        let msg = pb::GetLimitsRequest {
            bank_bin: bank_bin.to_string(),
            account: account.to_string(),
        };
        call!(
            self,
            TellerClient,
            get_limits,
            "/paymentswitch.v1.Teller/GetLimits",
            msg
        )
    }

    pub async fn cash_in(
        &self,
        msg: pb::CashInRequest,
    ) -> Result<pb::TransactionResponse, Failure> {
        call!(
            self,
            TellerClient,
            cash_in,
            "/paymentswitch.v1.Teller/CashIn",
            msg
        )
    }

    pub async fn cash_out_start(
        &self,
        msg: pb::CashOutStartRequest,
    ) -> Result<pb::TransactionResponse, Failure> {
        call!(
            self,
            TellerClient,
            cash_out_start,
            "/paymentswitch.v1.Teller/CashOutStart",
            msg
        )
    }

    pub async fn cash_out_confirm(&self, id: &str) -> Result<pb::TransactionResponse, Failure> {
        let msg = pb::CashOutConfirmRequest {
            transaction_id: id.to_string(),
        };
        call!(
            self,
            TellerClient,
            cash_out_confirm,
            "/paymentswitch.v1.Teller/CashOutConfirm",
            msg
        )
    }

    pub async fn cash_out_cancel(&self, id: &str) -> Result<pb::TransactionResponse, Failure> {
        let msg = pb::CashOutCancelRequest {
            transaction_id: id.to_string(),
        };
        call!(
            self,
            TellerClient,
            cash_out_cancel,
            "/paymentswitch.v1.Teller/CashOutCancel",
            msg
        )
    }

    pub async fn open_shift(&self, counted_cash: u64) -> Result<pb::Shift, Failure> {
        let msg = pb::OpenShiftRequest { counted_cash };
        call!(
            self,
            TellerClient,
            open_shift,
            "/paymentswitch.v1.Teller/OpenShift",
            msg
        )
    }

    pub async fn close_shift(&self, counted_cash: u64) -> Result<pb::Shift, Failure> {
        let msg = pb::CloseShiftRequest { counted_cash };
        call!(
            self,
            TellerClient,
            close_shift,
            "/paymentswitch.v1.Teller/CloseShift",
            msg
        )
    }

    pub async fn transaction(&self, id: &str) -> Result<pb::Transaction, Failure> {
        let msg = pb::GetTransactionRequest {
            transaction_id: id.to_string(),
        };
        let r = call!(
            self,
            TellerClient,
            get_transaction,
            "/paymentswitch.v1.Teller/GetTransaction",
            msg
        )?;
        r.transaction
            .ok_or_else(|| Failure::new("internal", "the switch sent no transaction".into()))
    }

    pub async fn transactions(
        &self,
        page_token: &str,
    ) -> Result<pb::ListTransactionsResponse, Failure> {
        let msg = pb::ListTransactionsRequest {
            page_size: 100,
            page_token: page_token.to_string(),
        };
        call!(
            self,
            TellerClient,
            list_transactions,
            "/paymentswitch.v1.Teller/ListTransactions",
            msg
        )
    }

    pub async fn billers(&self) -> Result<Vec<pb::BillerInfo>, Failure> {
        let r = call!(
            self,
            BillsClient,
            list_billers,
            "/paymentswitch.v1.Bills/ListBillers",
            pb::ListBillersRequest {}
        )?;
        Ok(r.billers)
    }

    pub async fn inquire_bills(
        &self,
        biller: &str,
        customer: &str,
    ) -> Result<pb::InquireBillsResponse, Failure> {
        let msg = pb::InquireBillsRequest {
            biller: biller.to_string(),
            customer: customer.to_string(),
        };
        call!(
            self,
            BillsClient,
            inquire_bills,
            "/paymentswitch.v1.Bills/InquireBills",
            msg
        )
    }

    pub async fn pay_bills(
        &self,
        msg: pb::PayBillsRequest,
    ) -> Result<pb::TransactionResponse, Failure> {
        call!(
            self,
            BillsClient,
            pay_bills,
            "/paymentswitch.v1.Bills/PayBills",
            msg
        )
    }

    pub async fn top_up(&self, msg: pb::TopUpRequest) -> Result<pb::TransactionResponse, Failure> {
        call!(
            self,
            BillsClient,
            top_up,
            "/paymentswitch.v1.Bills/TopUp",
            msg
        )
    }
}
