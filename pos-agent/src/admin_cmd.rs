//! Operator commands: ledger check, provisioning, and keys' lifecycle.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use proto::v1 as pb;
use proto::v1::admin_client::AdminClient;
use serde_json::json;

use crate::client::{Failure, Profile};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Verify the ledger's invariants now.
    Check,
    /// Add a post office with its first e-float.
    PostOffice {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Whole đồng of e-float to start with.
        #[arg(long, default_value_t = 0)]
        float: u64,
    },
    /// Add a teller terminal and write its profile (owner-only).
    Terminal {
        #[arg(long)]
        id: String,
        #[arg(long)]
        post_office: String,
        #[arg(long, default_value_t = 0)]
        opening_cash: u64,
        /// Where to write the terminal's profile.
        #[arg(long)]
        profile_out: PathBuf,
    },
    /// Add a merchant paid into its bank account; write its profile.
    Merchant {
        #[arg(long)]
        id: String,
        /// As printed in its codes, up to 25 characters.
        #[arg(long)]
        name: String,
        #[arg(long)]
        city: String,
        #[arg(long)]
        mcc: String,
        #[arg(long)]
        bank: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        profile_out: PathBuf,
    },
    /// Revoke a caller's key (terminal, merchant, bank or operator): every
    /// node refuses it within a second. Not undone.
    RevokeKey {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Give a caller a new secret and write its new profile (owner-only);
    /// the old secret works on for the switch's rotation grace.
    RotateKey {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        profile_out: PathBuf,
    },
    /// A user of the web console: an operator, or a bank's settlement
    /// staff (`--role bank --bank BIN`). Prints the password, once.
    ConsoleUser {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "operator")]
        role: String,
        #[arg(long, default_value = "")]
        bank: String,
    },
    /// List the web console's users (never their passwords).
    ConsoleUsers,
    /// Stop a console user: refused at sign-in, sessions ended everywhere.
    DisableConsoleUser {
        #[arg(long)]
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Give a console user a new password (printed once); ends their
    /// sessions and enables a disabled user.
    ResetConsolePassword {
        #[arg(long)]
        name: String,
    },
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

pub async fn run(profile: &Path, command: AdminCommand, json: bool) -> Result<String, Failure> {
    let profile = Profile::load(profile)?;
    if profile.role != "operator" {
        return Err(Failure::from(format!(
            "this is a {} profile; admin commands need an operator's",
            profile.role
        )));
    }
    let credentials = profile.credentials()?;
    let mut client = AdminClient::new(profile.connect().await?);
    match command {
        AdminCommand::Check => {
            let r = client
                .check_ledger(credentials.sign(
                    "/paymentswitch.v1.Admin/CheckLedger",
                    pb::CheckLedgerRequest {},
                ))
                .await?
                .into_inner();
            Ok(if json {
                json!({"balanced": r.balanced, "violations": r.violations, "accounts": r.accounts, "pending_transfers": r.pending_transfers}).to_string()
            } else {
                format!(
                    "balanced: {}; {} accounts, {} pending transfers; violations: {:?}\n",
                    r.balanced, r.accounts, r.pending_transfers, r.violations
                )
            })
        }
        AdminCommand::PostOffice { id, name, float } => {
            let req = pb::ProvisionPostOfficeRequest {
                post_office_id: id,
                name,
                initial_float: float,
            };
            let r = client
                .provision_post_office(
                    credentials.sign("/paymentswitch.v1.Admin/ProvisionPostOffice", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"post_office_id": r.post_office_id, "name": r.name}).to_string()
            } else {
                format!("post office {} ({})\n", r.post_office_id, r.name)
            })
        }
        AdminCommand::Terminal {
            id,
            post_office,
            opening_cash,
            profile_out,
        } => {
            let req = pb::ProvisionTerminalRequest {
                terminal_id: id,
                post_office_id: post_office,
                opening_cash,
            };
            let r = client
                .provision_terminal(
                    credentials.sign("/paymentswitch.v1.Admin/ProvisionTerminal", req),
                )
                .await?
                .into_inner();
            let text = format!(
                "role = \"teller\"\nid = \"{}\"\nswitch = \"{}\"\nsecret = \"{}\"\npost_office = \"{}\"\n",
                r.terminal_id, profile.switch, r.secret, r.post_office_id
            );
            write_private(&profile_out, &text)
                .map_err(|e| Failure::from(format!("{}: {e}", profile_out.display())))?;
            Ok(if json {
                json!({"terminal_id": r.terminal_id, "post_office_id": r.post_office_id, "profile": profile_out}).to_string()
            } else {
                format!(
                    "terminal {} at {}; profile written to {}\n",
                    r.terminal_id,
                    r.post_office_id,
                    profile_out.display()
                )
            })
        }
        AdminCommand::Merchant {
            id,
            name,
            city,
            mcc,
            bank,
            account,
            profile_out,
        } => {
            let req = pb::ProvisionMerchantRequest {
                merchant_id: id,
                name,
                city,
                mcc,
                bank_bin: bank,
                account,
            };
            let r = client
                .provision_merchant(
                    credentials.sign("/paymentswitch.v1.Admin/ProvisionMerchant", req),
                )
                .await?
                .into_inner();
            let text = format!(
                "role = \"merchant\"\nid = \"{}\"\nswitch = \"{}\"\nsecret = \"{}\"\n",
                r.merchant_id, profile.switch, r.secret
            );
            write_private(&profile_out, &text)
                .map_err(|e| Failure::from(format!("{}: {e}", profile_out.display())))?;
            Ok(if json {
                json!({"merchant_id": r.merchant_id, "static_qr_payload": r.static_qr_payload, "profile": profile_out}).to_string()
            } else {
                format!(
                    "merchant {}; static code {}; profile written to {}\n",
                    r.merchant_id,
                    r.static_qr_payload,
                    profile_out.display()
                )
            })
        }
        AdminCommand::RevokeKey { key_id, reason } => {
            let req = pb::RevokeKeyRequest { key_id, reason };
            let r = client
                .revoke_key(credentials.sign("/paymentswitch.v1.Admin/RevokeKey", req))
                .await?
                .into_inner();
            Ok(if json {
                json!({"key_id": r.key_id, "revoked_at_ms": r.revoked_at_ms, "revoked_by": r.revoked_by, "reason": r.reason}).to_string()
            } else {
                format!(
                    "key {} revoked by {} ({})\n",
                    r.key_id, r.revoked_by, r.reason
                )
            })
        }
        AdminCommand::RotateKey {
            key_id,
            profile_out,
        } => {
            let req = pb::RotateKeyRequest { key_id };
            let r = client
                .rotate_key(credentials.sign("/paymentswitch.v1.Admin/RotateKey", req))
                .await?
                .into_inner();
            // A bank's profile names itself by its BIN, like its key id.
            let text = format!(
                "role = \"{}\"\nid = \"{}\"\nswitch = \"{}\"\nsecret = \"{}\"\n",
                r.role, r.key_id, profile.switch, r.secret
            );
            write_private(&profile_out, &text)
                .map_err(|e| Failure::from(format!("{}: {e}", profile_out.display())))?;
            Ok(if json {
                json!({"key_id": r.key_id, "role": r.role, "profile": profile_out, "previous_valid_until_ms": r.previous_valid_until_ms}).to_string()
            } else {
                format!(
                    "key {} has a new secret; profile written to {}; the old one works until {} (ms since the epoch)\n",
                    r.key_id,
                    profile_out.display(),
                    r.previous_valid_until_ms
                )
            })
        }
        AdminCommand::ConsoleUser { name, role, bank } => {
            let req = pb::CreateConsoleUserRequest {
                name,
                role,
                bank_bin: bank,
            };
            let r = client
                .create_console_user(
                    credentials.sign("/paymentswitch.v1.Admin/CreateConsoleUser", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"name": r.name, "role": r.role, "bank": r.bank_bin, "password": r.password})
                    .to_string()
            } else {
                format!(
                    "console user {} ({}{}); password (shown once): {}\n",
                    r.name,
                    r.role,
                    if r.bank_bin.is_empty() {
                        String::new()
                    } else {
                        format!(" of {}", r.bank_bin)
                    },
                    r.password
                )
            })
        }
        AdminCommand::ConsoleUsers => {
            let req = pb::ListConsoleUsersRequest {};
            let r = client
                .list_console_users(
                    credentials.sign("/paymentswitch.v1.Admin/ListConsoleUsers", req),
                )
                .await?
                .into_inner();
            let user = |u: &pb::ConsoleUserInfo| {
                json!({"name": u.name, "role": u.role, "bank": u.bank_bin,
                    "created_at_ms": u.created_at_ms, "created_by": u.created_by,
                    "password_set_at_ms": u.password_set_at_ms,
                    "disabled_at_ms": u.disabled_at_ms, "disabled_by": u.disabled_by,
                    "disabled_reason": u.disabled_reason})
            };
            Ok(if json {
                json!({"users": r.users.iter().map(user).collect::<Vec<_>>()}).to_string()
            } else {
                r.users
                    .iter()
                    .map(|u| {
                        let state = if u.disabled_at_ms == 0 {
                            "active".to_string()
                        } else {
                            format!("disabled by {}: {}", u.disabled_by, u.disabled_reason)
                        };
                        format!("{:<32} {:<8} {:<8} {state}\n", u.name, u.role, u.bank_bin)
                    })
                    .collect()
            })
        }
        AdminCommand::DisableConsoleUser { name, reason } => {
            let req = pb::DisableConsoleUserRequest { name, reason };
            let u = client
                .disable_console_user(
                    credentials.sign("/paymentswitch.v1.Admin/DisableConsoleUser", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"name": u.name, "disabled_at_ms": u.disabled_at_ms, "disabled_by": u.disabled_by, "reason": u.disabled_reason}).to_string()
            } else {
                format!("console user {} disabled by {}\n", u.name, u.disabled_by)
            })
        }
        AdminCommand::ResetConsolePassword { name } => {
            let req = pb::ResetConsoleUserPasswordRequest { name };
            let r = client
                .reset_console_user_password(
                    credentials.sign("/paymentswitch.v1.Admin/ResetConsoleUserPassword", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"name": r.name, "password": r.password}).to_string()
            } else {
                format!(
                    "console user {}: new password (shown once): {}\n",
                    r.name, r.password
                )
            })
        }
    }
}
