//! The simulators served over gRPC: a bank over the `BankAdapter` service
//! (what `bank-sim` runs), a biller over `BillerAdapter` (`biller-sim`),
//! for trying the switch against parties in other processes; and the one
//! `main` both binaries share.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::adapters::bank::{BankAdapter, BankError, BankTxStatus, RejectReason};
use crate::adapters::biller::{BillerAdapter, BillerError, BillerTxStatus};
use crate::ids::Reference;

use super::bank::SimBank;
use super::biller::SimBiller;

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
                RejectReason::IncorrectPin => pb::BankRejectReason::IncorrectPin,
                RejectReason::PinTriesExceeded => pb::BankRejectReason::PinTriesExceeded,
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

    async fn card_debit(
        &self,
        req: Request<pb::BankCardDebitRequest>,
    ) -> Result<Response<pb::BankResult>, Status> {
        let r = req.into_inner();
        to_result(
            self.sim
                .card_debit(
                    reference(&r.reference)?,
                    &r.card_number,
                    &r.pin_block,
                    r.amount,
                )
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

/// The biller simulator as a `BillerAdapter` gRPC service.
pub struct SimBillerService {
    pub sim: Arc<SimBiller>,
}

fn to_biller_result(r: Result<String, BillerError>) -> Result<Response<pb::BillerResult>, Status> {
    match r {
        Ok(biller_reference) => Ok(Response::new(pb::BillerResult {
            accepted: true,
            biller_reference,
            ..Default::default()
        })),
        Err(BillerError::Rejected { reason, message }) => Ok(Response::new(pb::BillerResult {
            accepted: false,
            biller_reference: String::new(),
            reason: crate::adapters::remote_biller::wire_reason(reason) as i32,
            message,
        })),
        Err(BillerError::Unavailable(m)) => Err(Status::unavailable(m)),
        Err(BillerError::Timeout) => Err(Status::deadline_exceeded("biller timed out")),
    }
}

#[tonic::async_trait]
impl pb::biller_adapter_server::BillerAdapter for SimBillerService {
    async fn inquire(
        &self,
        req: Request<pb::BillerInquireRequest>,
    ) -> Result<Response<pb::BillerInquireResponse>, Status> {
        match self.sim.inquire(&req.get_ref().customer).await {
            Ok(s) => Ok(Response::new(pb::BillerInquireResponse {
                found: true,
                customer_name: s.customer_name,
                bills: s
                    .bills
                    .into_iter()
                    .map(|b| pb::BillerBill {
                        bill_id: b.id,
                        period: b.period,
                        amount: b.amount,
                        due_date: b.due_date,
                    })
                    .collect(),
            })),
            Err(BillerError::Rejected { .. }) => Ok(Response::new(pb::BillerInquireResponse {
                found: false,
                ..Default::default()
            })),
            Err(BillerError::Unavailable(m)) => Err(Status::unavailable(m)),
            Err(BillerError::Timeout) => Err(Status::deadline_exceeded("biller timed out")),
        }
    }

    async fn pay(
        &self,
        req: Request<pb::BillerPayRequest>,
    ) -> Result<Response<pb::BillerResult>, Status> {
        let r = req.into_inner();
        to_biller_result(
            self.sim
                .pay(reference(&r.reference)?, &r.customer, &r.bill_ids, r.amount)
                .await,
        )
    }

    async fn top_up(
        &self,
        req: Request<pb::BillerTopUpRequest>,
    ) -> Result<Response<pb::BillerResult>, Status> {
        let r = req.into_inner();
        to_biller_result(
            self.sim
                .top_up(reference(&r.reference)?, &r.phone, r.amount)
                .await,
        )
    }

    async fn cancel(
        &self,
        req: Request<pb::BillerCancelRequest>,
    ) -> Result<Response<pb::BillerResult>, Status> {
        let id = reference(&req.get_ref().reference)?;
        to_biller_result(self.sim.cancel(id).await.map(|()| String::new()))
    }

    async fn status(
        &self,
        req: Request<pb::BillerStatusRequest>,
    ) -> Result<Response<pb::BillerStatusResponse>, Status> {
        let id = reference(&req.get_ref().reference)?;
        let (state, biller_reference) = match self.sim.status(id).await {
            Ok(BillerTxStatus::Completed { biller_reference }) => {
                (pb::BillerTxState::Completed, biller_reference)
            }
            Ok(BillerTxStatus::Cancelled) => (pb::BillerTxState::Cancelled, String::new()),
            Ok(BillerTxStatus::NotFound) => (pb::BillerTxState::NotFound, String::new()),
            Err(BillerError::Unavailable(m)) => return Err(Status::unavailable(m)),
            Err(_) => return Err(Status::deadline_exceeded("biller timed out")),
        };
        Ok(Response::new(pb::BillerStatusResponse {
            state: state as i32,
            biller_reference,
        }))
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
    let routes = tonic::service::Routes::new(pb::bank_adapter_server::BankAdapterServer::new(
        SimBankService { sim },
    ));
    serve(listener, routes, tls, shutdown).await
}

/// Serve a simulated biller on `listener` (over TLS with `tls`) until
/// `shutdown` resolves.
pub async fn serve_biller_sim(
    listener: tokio::net::TcpListener,
    sim: Arc<SimBiller>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let routes = tonic::service::Routes::new(pb::biller_adapter_server::BillerAdapterServer::new(
        SimBillerService { sim },
    ));
    serve(listener, routes, tls, shutdown).await
}

async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
