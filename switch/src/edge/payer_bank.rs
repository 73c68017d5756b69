//! A payer's bank paying a VietQR code for its customer.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::flows::Switch;

use super::convert::*;

pub struct PayerBankService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::payer_bank_server::PayerBank for PayerBankService {
    async fn pay_qr(
        &self,
        req: Request<pb::PayQrRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("pay_qr", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            answer(
                &self.switch,
                self.switch
                    .pay_qr(
                        &p,
                        &r.client_request_id,
                        &r.payload,
                        &r.payer_account,
                        r.amount,
                    )
                    .await,
            )
        })
        .await
    }
}
