//! The bank simulator served over the `BankAdapter` gRPC service (what the
//! `bank-sim` binary runs), for trying the switch against a bank in another
//! process.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::adapters::bank::{BankAdapter, BankError, BankTxStatus, RejectReason};
use crate::ids::Reference;

use super::bank::SimBank;

/// The simulator as a `BankAdapter` gRPC service.
pub struct SimBankService {
    pub sim: Arc<SimBank>,
}

fn reference(r: &str) -> Result<Reference, Status> {
    Reference::parse(r)
        .ok_or_else(|| Status::invalid_argument("reference must be a switch transaction id"))
}

fn to_result(r: Result<String, BankError>) -> Result<Response<pb::BankResult>, Status> {
    match r {
        Ok(bank_reference) => Ok(Response::new(pb::BankResult {
            accepted: true,
            bank_reference,
            ..Default::default()
        })),
        Err(BankError::Rejected { reason, message }) => {
            let reason = match reason {
                RejectReason::AccountNotFound => pb::BankRejectReason::AccountNotFound,
                RejectReason::InsufficientFunds => pb::BankRejectReason::InsufficientFunds,
                RejectReason::AlreadyReversed => pb::BankRejectReason::AlreadyReversed,
                RejectReason::InvalidCode => pb::BankRejectReason::InvalidCode,
                RejectReason::CodeExpired => pb::BankRejectReason::CodeExpired,
                RejectReason::Other => pb::BankRejectReason::Other,
            };
            Ok(Response::new(pb::BankResult {
                accepted: false,
                bank_reference: String::new(),
                reason: reason as i32,
                message,
            }))
        }
        Err(BankError::Unavailable(m)) => Err(Status::unavailable(m)),
        Err(BankError::Timeout) => Err(Status::deadline_exceeded("bank timed out")),
    }
}

#[tonic::async_trait]
impl pb::bank_adapter_server::BankAdapter for SimBankService {
    async fn name_inquiry(
        &self,
        req: Request<pb::BankNameInquiryRequest>,
    ) -> Result<Response<pb::BankNameInquiryResponse>, Status> {
        match self.sim.name_inquiry(&req.get_ref().account).await {
            Ok(name) => Ok(Response::new(pb::BankNameInquiryResponse {
                found: true,
                account_name: name,
            })),
            Err(BankError::Rejected { .. }) => Ok(Response::new(pb::BankNameInquiryResponse {
                found: false,
                account_name: String::new(),
            })),
            Err(BankError::Unavailable(m)) => Err(Status::unavailable(m)),
            Err(BankError::Timeout) => Err(Status::deadline_exceeded("bank timed out")),
        }
    }

    async fn credit(
        &self,
        req: Request<pb::BankCreditRequest>,
    ) -> Result<Response<pb::BankResult>, Status> {
        let r = req.into_inner();
        to_result(
            self.sim
                .credit(reference(&r.reference)?, &r.account, r.amount)
                .await,
        )
    }

    async fn debit_with_code(
        &self,
        req: Request<pb::BankDebitRequest>,
    ) -> Result<Response<pb::BankResult>, Status> {
        let r = req.into_inner();
        to_result(
            self.sim
                .debit_with_code(
                    reference(&r.reference)?,
                    &r.account,
                    &r.code,
                    r.amount,
                    r.fee,
                )
                .await,
        )
    }

    async fn debit(
        &self,
        req: Request<pb::BankDebitRequest>,
    ) -> Result<Response<pb::BankResult>, Status> {
        let r = req.into_inner();
        to_result(
            self.sim
                .debit(reference(&r.reference)?, &r.account, r.amount)
                .await,
        )
    }

    async fn reverse(
        &self,
        req: Request<pb::BankReverseRequest>,
    ) -> Result<Response<pb::BankResult>, Status> {
        let id = reference(&req.get_ref().reference)?;
        to_result(self.sim.reverse(id).await.map(|()| String::new()))
    }

    async fn status(
        &self,
        req: Request<pb::BankStatusRequest>,
    ) -> Result<Response<pb::BankStatusResponse>, Status> {
        let id = reference(&req.get_ref().reference)?;
        match self.sim.status(id).await {
            Ok(BankTxStatus::Completed { bank_reference }) => {
                Ok(Response::new(pb::BankStatusResponse {
                    state: pb::BankTxState::Completed as i32,
                    bank_reference,
                }))
            }
            Ok(BankTxStatus::Reversed) => Ok(Response::new(pb::BankStatusResponse {
                state: pb::BankTxState::Reversed as i32,
                bank_reference: String::new(),
            })),
            Ok(BankTxStatus::NotFound) => Ok(Response::new(pb::BankStatusResponse {
                state: pb::BankTxState::NotFound as i32,
                bank_reference: String::new(),
            })),
            Err(BankError::Unavailable(m)) => Err(Status::unavailable(m)),
            Err(_) => Err(Status::deadline_exceeded("bank timed out")),
        }
    }
}

/// Serve a simulated bank on `listener` (over TLS with `tls`) until
/// `shutdown` resolves.
pub async fn serve_sim(
    listener: tokio::net::TcpListener,
    sim: Arc<SimBank>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(pb::bank_adapter_server::BankAdapterServer::new(
            SimBankService { sim },
        ))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
