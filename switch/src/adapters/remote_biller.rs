//! Billers in another process: the switch as a client of the
//! `BillerAdapter` gRPC service (biller.proto), as [`super::remote_bank`]
//! is for banks. What a biller answers maps onto [`BillerAdapter`]
//! unchanged: a refusal says nothing happened, UNAVAILABLE says the biller
//! did nothing, anything else leaves the outcome unknown.

use proto::v1 as pb;
use proto::v1::biller_adapter_client::BillerAdapterClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::adapters::biller::{
    Bill, BillerAdapter, BillerError, BillerFuture, BillerReject, BillerTxStatus, Statement,
};
use crate::ids::Reference;

/// A biller reached over gRPC.
pub struct RemoteBiller {
    client: BillerAdapterClient<Channel>,
}

impl RemoteBiller {
    /// Connects lazily (see [`super::remote::channel`]).
    pub fn new(
        address: &str,
        timeout_ms: u64,
        tls: &proto::tls::ClientTls<'_>,
        insecure: bool,
    ) -> Result<RemoteBiller, String> {
        let channel = super::remote::channel("biller", address, timeout_ms, tls, insecure)?;
        Ok(RemoteBiller {
            client: BillerAdapterClient::new(channel),
        })
    }
}

fn from_status(s: Status) -> BillerError {
    match s.code() {
        Code::Unavailable => BillerError::Unavailable(s.message().to_string()),
        _ => BillerError::Timeout,
    }
}

fn reject_reason(reason: i32) -> BillerReject {
    match pb::BillerRejectReason::try_from(reason) {
        Ok(pb::BillerRejectReason::CustomerNotFound) => BillerReject::CustomerNotFound,
        Ok(pb::BillerRejectReason::BillNotDue) => BillerReject::BillNotDue,
        Ok(pb::BillerRejectReason::PartialNotAllowed) => BillerReject::PartialNotAllowed,
        Ok(pb::BillerRejectReason::AmountMismatch) => BillerReject::AmountMismatch,
        Ok(pb::BillerRejectReason::AlreadyCancelled) => BillerReject::AlreadyCancelled,
        _ => BillerReject::Other,
    }
}

/// The wire's reason for a refusal (the simulator's service answers with it).
pub fn wire_reason(reason: BillerReject) -> pb::BillerRejectReason {
    match reason {
        BillerReject::CustomerNotFound => pb::BillerRejectReason::CustomerNotFound,
        BillerReject::BillNotDue => pb::BillerRejectReason::BillNotDue,
        BillerReject::PartialNotAllowed => pb::BillerRejectReason::PartialNotAllowed,
        BillerReject::AmountMismatch => pb::BillerRejectReason::AmountMismatch,
        BillerReject::AlreadyCancelled => pb::BillerRejectReason::AlreadyCancelled,
        BillerReject::Other => pb::BillerRejectReason::Other,
    }
}

fn from_result(r: pb::BillerResult) -> Result<String, BillerError> {
    if r.accepted {
        return Ok(r.biller_reference);
    }
    Err(BillerError::Rejected {
        reason: reject_reason(r.reason),
        message: r.message,
    })
}

impl BillerAdapter for RemoteBiller {
    fn inquire<'a>(&'a self, customer: &'a str) -> BillerFuture<'a, Statement> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .inquire(pb::BillerInquireRequest {
                    customer: customer.into(),
                })
                .await
                .map_err(from_status)?
                .into_inner();
            if !r.found {
                return Err(BillerError::Rejected {
                    reason: BillerReject::CustomerNotFound,
                    message: "no such customer".into(),
                });
            }
            Ok(Statement {
                customer_name: r.customer_name,
                bills: r
                    .bills
                    .into_iter()
                    .map(|b| Bill {
                        id: b.bill_id,
                        period: b.period,
                        amount: b.amount,
                        due_date: b.due_date,
                    })
                    .collect(),
            })
        })
    }

    fn pay<'a>(
        &'a self,
        reference: Reference,
        customer: &'a str,
        bills: &'a [String],
        amount: u64,
    ) -> BillerFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BillerPayRequest {
                reference: reference.to_string(),
                customer: customer.into(),
                bill_ids: bills.to_vec(),
                amount,
            };
            from_result(
                self.client
                    .clone()
                    .pay(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn top_up<'a>(
        &'a self,
        reference: Reference,
        phone: &'a str,
        amount: u64,
    ) -> BillerFuture<'a, String> {
        Box::pin(async move {
            let req = pb::BillerTopUpRequest {
                reference: reference.to_string(),
                phone: phone.into(),
                amount,
            };
            from_result(
                self.client
                    .clone()
                    .top_up(req)
                    .await
                    .map_err(from_status)?
                    .into_inner(),
            )
        })
    }

    fn cancel(&self, reference: Reference) -> BillerFuture<'_, ()> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .cancel(pb::BillerCancelRequest {
                    reference: reference.to_string(),
                })
                .await
                .map_err(from_status)?;
            from_result(r.into_inner()).map(|_| ())
        })
    }

    fn status(&self, reference: Reference) -> BillerFuture<'_, BillerTxStatus> {
        Box::pin(async move {
            let r = self
                .client
                .clone()
                .status(pb::BillerStatusRequest {
                    reference: reference.to_string(),
                })
                .await
                .map_err(from_status)?
                .into_inner();
            Ok(match pb::BillerTxState::try_from(r.state) {
                Ok(pb::BillerTxState::Completed) => BillerTxStatus::Completed {
                    biller_reference: r.biller_reference,
                },
                Ok(pb::BillerTxState::Cancelled) => BillerTxStatus::Cancelled,
                _ => BillerTxStatus::NotFound,
            })
        })
    }
}
