//! What a customer's bank app would do, for the demo and tests: issue a
//! withdrawal code for the soft ATM. Served by the switch only while banks
//! are simulated in-process, wired in at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::adapters::bank::{BankError, RejectReason};
use crate::caller::Principal;
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};

use super::SimBank;

pub struct SimulatorService {
    /// The in-process simulated banks, by BIN.
    pub banks: HashMap<String, Arc<SimBank>>,
}

#[tonic::async_trait]
impl pb::simulator_server::Simulator for SimulatorService {
    async fn issue_withdrawal_code(
        &self,
        req: Request<pb::IssueWithdrawalCodeRequest>,
    ) -> Result<Response<pb::IssueWithdrawalCodeResponse>, Status> {
        crate::telemetry::observe("issue_withdrawal_code", async move {
            if req.extensions().get::<Principal>().is_none() {
                return Err(Status::unauthenticated(
                    "unauthenticated: no verified caller",
                ));
            }
            let r = req.into_inner();
            let sim = self.banks.get(&r.bank_bin).ok_or_else(|| {
                Status::from(SwitchError::new(
                    ErrorCode::UnknownBank,
                    format!("no simulated bank with BIN {}", r.bank_bin),
                ))
            })?;
            match sim.issue_withdrawal_code(&r.account, r.amount, now_ms()) {
                Ok((code, expires_at_ms)) => Ok(Response::new(pb::IssueWithdrawalCodeResponse {
                    code,
                    expires_at_ms,
                })),
                Err(BankError::Rejected {
                    reason: RejectReason::AccountNotFound,
                    ..
                }) => Err(SwitchError::new(
                    ErrorCode::AccountNotFound,
                    "no such account at that bank",
                )
                .into()),
                Err(e) => Err(SwitchError::invalid(format!("{e:?}")).into()),
            }
        })
        .await
    }
}
