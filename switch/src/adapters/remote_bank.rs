//! Banks in another process: the switch as a client of the `BankAdapter`
//! gRPC service ([`RemoteBank`]), and the simulator served over it
//! ([`SimBankService`], what the `bank-sim` binary runs).

use proto::v1 as pb;
use proto::v1::bank_adapter_client::BankAdapterClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::adapters::bank::{BankAdapter, BankError, BankFuture, BankTxStatus, RejectReason};
use crate::ids::Reference;

/// A bank reached over gRPC.
pub struct RemoteBank {
    client: BankAdapterClient<Channel>,
}

impl RemoteBank {
    /// Connects lazily (see [`super::remote::channel`]).
    pub fn new(
        address: &str,
        timeout_ms: u64,
        tls: &proto::tls::ClientTls<'_>,
        insecure: bool,
    ) -> Result<RemoteBank, String> {
        let channel = super::remote::channel("bank", address, timeout_ms, tls, insecure)?;
        Ok(RemoteBank {
            client: BankAdapterClient::new(channel),
        })
    }
}

/// UNAVAILABLE (and a refused connection) says nothing happened; anything
/// else leaves the outcome unknown.
fn from_status(s: Status) -> BankError {
    match s.code() {
        Code::Unavailable => BankError::Unavailable(s.message().to_string()),
        _ => BankError::Timeout,
    }
}

fn from_result(r: pb::BankResult) -> Result<String, BankError> {
    if r.accepted {
        return Ok(r.bank_reference);
    }
    let reason = match pb::BankRejectReason::try_from(r.reason) {
        Ok(pb::BankRejectReason::AccountNotFound) => RejectReason::AccountNotFound,
        Ok(pb::BankRejectReason::InsufficientFunds) => RejectReason::InsufficientFunds,
        Ok(pb::BankRejectReason::AlreadyReversed) => RejectReason::AlreadyReversed,
        Ok(pb::BankRejectReason::InvalidCode) => RejectReason::InvalidCode,
        Ok(pb::BankRejectReason::CodeExpired) => RejectReason::CodeExpired,
        Ok(pb::BankRejectReason::IncorrectPin) => RejectReason::IncorrectPin,
        Ok(pb::BankRejectReason::PinTriesExceeded) => RejectReason::PinTriesExceeded,
        _ => RejectReason::Other,
    };
    Err(BankError::Rejected {
        reason,
        message: r.message,
    })
}

impl BankAdapter for RemoteBank {
    fn name_inquiry<'a>(&'a self, account: &'a str) -> BankFuture<'a, String> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .name_inquiry(pb::BankNameInquiryRequest {
                    account: account.into(),
                })
                .await
                .map_err(from_status)?
                .into_inner();
            if r.found {
                Ok(r.account_name)
            } else {
                Err(BankError::Rejected {
                    reason: RejectReason::AccountNotFound,
                    message: "no such account".into(),
                })
            }
        })
    }

    fn credit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BankCreditRequest {
                reference: reference.to_string(),
                account: account.into(),
                amount,
            };
            from_result(
                self.client
                    .clone()
                    .credit(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn debit_with_code<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        code: &'a str,
        amount: u64,
        fee: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BankDebitRequest {
                reference: reference.to_string(),
                account: account.into(),
                code: code.into(),
                amount,
                fee,
            };
            from_result(
                self.client
                    .clone()
                    .debit_with_code(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn debit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BankDebitRequest {
                reference: reference.to_string(),
                account: account.into(),
                code: String::new(),
                amount,
                fee: 0,
            };
            from_result(
                self.client
                    .clone()
                    .debit(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn card_debit<'a>(
        &'a self,
        reference: Reference,
        card_number: &'a str,
        pin_block: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BankCardDebitRequest {
                reference: reference.to_string(),
                card_number: card_number.into(),
                pin_block: pin_block.into(),
                amount,
            };
            from_result(
                self.client
                    .clone()
                    .card_debit(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn reverse(&self, reference: Reference) -> BankFuture<'_, ()> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .reverse(pb::BankReverseRequest {
                    reference: reference.to_string(),
                })
                .await
                .map_err(from_status)?;
            from_result(r.into_inner()).map(|_| ())
        })
    }

    fn status(&self, reference: Reference) -> BankFuture<'_, BankTxStatus> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .status(pb::BankStatusRequest {
                    reference: reference.to_string(),
                })
                .await
                .map_err(from_status)?
                .into_inner();
            Ok(match pb::BankTxState::try_from(r.state) {
                Ok(pb::BankTxState::Completed) => BankTxStatus::Completed {
                    bank_reference: r.bank_reference,
                },
                Ok(pb::BankTxState::Reversed) => BankTxStatus::Reversed,
                _ => BankTxStatus::NotFound,
            })
        })
    }
}
