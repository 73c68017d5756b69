//! The operator's provisioning and ledger check.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::caller::Role;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::Switch;

use super::convert::*;

pub struct AdminService {
    pub switch: Arc<Switch>,
    /// New terminals' credentials take effect at once.
    pub keys: Arc<crate::edge::auth::Keys>,
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn set_fee_catalogue(
        &self,
        req: Request<pb::SetFeeCatalogueRequest>,
    ) -> Result<Response<pb::FeeCatalogue>, Status> {
        crate::telemetry::observe("set_fee_catalogue", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let items = r
                .items
                .into_iter()
                .map(crate::edge::merchant::fee_item_from_proto)
                .collect();
            let (m, c) = self
                .switch
                .set_fee_catalogue(&p, &r.collector_id, items)
                .await?;
            Ok(Response::new(crate::edge::merchant::catalogue_to_proto(
                &m, &c,
            )))
        })
        .await
    }

    async fn create_console_user(
        &self,
        req: Request<pb::CreateConsoleUserRequest>,
    ) -> Result<Response<pb::CreateConsoleUserResponse>, Status> {
        crate::telemetry::observe("create_console_user", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (u, password) = crate::flows::provisioning::create_console_user(
                &self.switch,
                &p,
                &r.name,
                &r.role,
                &r.bank_bin,
            )
            .await?;
            Ok(Response::new(console_password(u, password)))
        })
        .await
    }

    async fn list_console_users(
        &self,
        req: Request<pb::ListConsoleUsersRequest>,
    ) -> Result<Response<pb::ListConsoleUsersResponse>, Status> {
        crate::telemetry::observe("list_console_users", async move {
            let p = principal(&req)?;
            let users = crate::flows::provisioning::console_users(&self.switch, &p)?;
            Ok(Response::new(pb::ListConsoleUsersResponse {
                users: users.into_iter().map(console_user_info).collect(),
            }))
        })
        .await
    }

    async fn disable_console_user(
        &self,
        req: Request<pb::DisableConsoleUserRequest>,
    ) -> Result<Response<pb::ConsoleUserInfo>, Status> {
        crate::telemetry::observe("disable_console_user", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let u = crate::flows::provisioning::disable_console_user(
                &self.switch,
                &p,
                &r.name,
                &r.reason,
            )
            .await?;
            Ok(Response::new(console_user_info(u)))
        })
        .await
    }

    async fn reset_console_user_password(
        &self,
        req: Request<pb::ResetConsoleUserPasswordRequest>,
    ) -> Result<Response<pb::CreateConsoleUserResponse>, Status> {
        crate::telemetry::observe("reset_console_user_password", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (u, password) =
                crate::flows::provisioning::reset_console_password(&self.switch, &p, &r.name)
                    .await?;
            Ok(Response::new(console_password(u, password)))
        })
        .await
    }

    async fn provision_post_office(
        &self,
        req: Request<pb::ProvisionPostOfficeRequest>,
    ) -> Result<Response<pb::PostOfficeInfo>, Status> {
        crate::telemetry::observe("provision_post_office", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let o = crate::flows::provisioning::provision_post_office(
                &self.switch,
                &p,
                &r.post_office_id,
                &r.name,
                r.initial_float,
                &r.commune,
            )
            .await?;
            Ok(Response::new(pb::PostOfficeInfo {
                post_office_id: o.id,
                name: o.name,
            }))
        })
        .await
    }

    async fn provision_commune(
        &self,
        req: Request<pb::ProvisionCommuneRequest>,
    ) -> Result<Response<pb::CommuneInfo>, Status> {
        crate::telemetry::observe("provision_commune", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let c = crate::flows::provisioning::provision_commune(
                &self.switch,
                &p,
                crate::store::Commune {
                    id: r.commune_id,
                    name: r.name,
                    district: r.district,
                    pilot: r.pilot,
                },
            )
            .await?;
            Ok(Response::new(pb::CommuneInfo {
                commune_id: c.id,
                name: c.name,
                district: c.district,
                pilot: c.pilot,
            }))
        })
        .await
    }

    async fn provision_terminal(
        &self,
        req: Request<pb::ProvisionTerminalRequest>,
    ) -> Result<Response<pb::ProvisionTerminalResponse>, Status> {
        crate::telemetry::observe("provision_terminal", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (t, secret) = crate::flows::provisioning::provision_terminal(
                &self.switch,
                self.keys.as_ref(),
                &p,
                &r.terminal_id,
                &r.post_office_id,
                r.opening_cash,
            )
            .await?;
            Ok(Response::new(pb::ProvisionTerminalResponse {
                terminal_id: t.id,
                post_office_id: t.post_office_id,
                secret: secret.expose_hex(),
            }))
        })
        .await
    }

    async fn provision_merchant(
        &self,
        req: Request<pb::ProvisionMerchantRequest>,
    ) -> Result<Response<pb::ProvisionMerchantResponse>, Status> {
        crate::telemetry::observe("provision_merchant", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (m, secret, payload) = crate::flows::provisioning::provision_merchant(
                &self.switch,
                self.keys.as_ref(),
                &p,
                crate::flows::provisioning::NewMerchant {
                    id: &r.merchant_id,
                    name: &r.name,
                    city: &r.city,
                    mcc: &r.mcc,
                    bank_bin: &r.bank_bin,
                    account: &r.account,
                    commune: &r.commune,
                },
            )
            .await?;
            Ok(Response::new(pb::ProvisionMerchantResponse {
                merchant_id: m.id,
                secret: secret.expose_hex(),
                static_qr_payload: payload,
            }))
        })
        .await
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        crate::telemetry::observe("revoke_key", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let done = crate::flows::provisioning::revoke_key(
                &self.switch,
                self.keys.as_ref(),
                &p,
                &r.key_id,
                &r.reason,
            )
            .await?;
            Ok(Response::new(pb::RevokeKeyResponse {
                key_id: done.key_id,
                revoked_at_ms: done.at_ms,
                revoked_by: done.by,
                reason: done.reason,
            }))
        })
        .await
    }

    async fn rotate_key(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        crate::telemetry::observe("rotate_key", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (holder, secret, previous_until_ms) = crate::flows::provisioning::rotate_key(
                &self.switch,
                self.keys.as_ref(),
                &p,
                &r.key_id,
            )
            .await?;
            let role = match holder.role {
                Role::Teller { .. } => "teller",
                Role::Merchant => "merchant",
                Role::Bank => "bank",
                Role::Operator => "operator",
            };
            Ok(Response::new(pb::RotateKeyResponse {
                key_id: holder.id,
                role: role.to_string(),
                secret: secret.expose_hex(),
                previous_valid_until_ms: previous_until_ms,
            }))
        })
        .await
    }

    async fn check_ledger(
        &self,
        req: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<pb::CheckLedgerResponse>, Status> {
        crate::telemetry::observe("check_ledger", async move {
            if principal(&req)?.role != Role::Operator {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "only an operator may check the ledger",
                )
                .into());
            }
            let report = self.switch.check_ledger().await?;
            Ok(Response::new(pb::CheckLedgerResponse {
                balanced: report.violations.is_empty(),
                violations: report.violations,
                accounts: report.accounts as u64,
                pending_transfers: report.pending_transfers as u64,
                currencies: report
                    .currencies
                    .iter()
                    .map(|c| pb::CurrencyTotals {
                        currency: u32::from(c.currency),
                        debits_pending: c.debits_pending.to_string(),
                        debits_posted: c.debits_posted.to_string(),
                        credits_pending: c.credits_pending.to_string(),
                        credits_posted: c.credits_posted.to_string(),
                    })
                    .collect(),
            }))
        })
        .await
    }
}

/// A console user's new password (made or reset), shown this once.
fn console_password(
    u: crate::store::ConsoleUser,
    password: String,
) -> pb::CreateConsoleUserResponse {
    pb::CreateConsoleUserResponse {
        name: u.name,
        role: u.role,
        bank_bin: u.bank_bin,
        password,
    }
}

/// A console user as the API shows it: everything but the password hash.
fn console_user_info(u: crate::store::ConsoleUser) -> pb::ConsoleUserInfo {
    let disabled = u.disabled.unwrap_or(crate::store::Disabled {
        at_ms: 0,
        by: String::new(),
        reason: String::new(),
    });
    pb::ConsoleUserInfo {
        name: u.name,
        role: u.role,
        bank_bin: u.bank_bin,
        created_at_ms: u.created_at_ms,
        created_by: u.created_by,
        password_set_at_ms: u.password_set_at_ms,
        disabled_at_ms: disabled.at_ms,
        disabled_by: disabled.by,
        disabled_reason: disabled.reason,
    }
}
