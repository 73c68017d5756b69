//! Banks in another process: the switch as a client of the `BankAdapter`
//! gRPC service ([`RemoteBank`]), and the simulator served over it
//! ([`SimBankService`], what the `bank-sim` binary runs).

use std::sync::Arc;
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::bank_adapter_client::BankAdapterClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::bank::{BankAdapter, BankError, BankFuture, BankTxStatus, RejectReason};
use crate::ids::Reference;
use crate::sim::SimBank;

/// A bank reached over gRPC.
pub struct RemoteBank {
    client: BankAdapterClient<Channel>,
}

impl RemoteBank {
    /// Connects lazily: a bank that is down fails calls, not the switch's start.
    pub fn new(address: &str, timeout_ms: u64) -> Result<RemoteBank, String> {
        let channel = Endpoint::from_shared(address.to_string())
            .map_err(|e| format!("bank address {address}: {e}"))?
            .connect_timeout(Duration::from_millis(timeout_ms.max(100)))
            .connect_lazy();
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

/// Serve a simulated bank on `listener` until `shutdown` resolves.
pub async fn serve_sim(
    listener: tokio::net::TcpListener,
    sim: Arc<SimBank>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(pb::bank_adapter_server::BankAdapterServer::new(
            SimBankService { sim },
        ))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
