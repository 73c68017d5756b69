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
        /// The commune it serves (`admin commune` first).
        #[arg(long, default_value = "")]
        commune: String,
    },
    /// Add (or update) a commune, which the pilot report groups by.
    Commune {
        #[arg(long)]
        id: String,
        /// "Thị trấn Thổ Tang".
        #[arg(long)]
        name: String,
        /// "Huyện Vĩnh Tường".
        #[arg(long)]
        district: String,
        /// One of the plan's pilot communes.
        #[arg(long)]
        pilot: bool,
    },
    /// The pilot report of a month or a quarter: per commune, post office
    /// and merchant, and for the province.
    Report {
        /// `2026-11`.
        #[arg(long, conflicts_with = "quarter", required_unless_present = "quarter")]
        month: Option<String>,
        /// `2026-Q4`.
        #[arg(long)]
        quarter: Option<String>,
        /// One commune's id.
        #[arg(long, default_value = "")]
        commune: String,
        /// table, json, csv or xlsx.
        #[arg(long, default_value = "table")]
        format: String,
        /// Where to write it (xlsx needs it); else standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rebuild the pilot report's aggregates from the transactions and
    /// compare them with those kept; `--repair` keeps the rebuild.
    ReportCheck {
        #[arg(long)]
        repair: bool,
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
        /// The commune it trades in (`admin commune` first).
        #[arg(long, default_value = "")]
        commune: String,
    },
    /// Set a commune one-stop desk's fee catalogue, replacing it whole. The
    /// desk is a merchant provisioned with `--mcc 9399`.
    FeeCatalogue {
        #[arg(long)]
        collector: String,
        /// `CODE|name|unit price (đồng)|unit|legal basis`, once per item:
        /// `--item "CT-BS|Chứng thực bản sao từ bản chính|2000|trang|Thông tư 226/2016/TT-BTC"`.
        #[arg(long = "item")]
        items: Vec<String>,
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
        AdminCommand::PostOffice {
            id,
            name,
            float,
            commune,
        } => {
            let req = pb::ProvisionPostOfficeRequest {
                post_office_id: id,
                name,
                initial_float: float,
                commune,
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
            commune,
        } => {
            let req = pb::ProvisionMerchantRequest {
                merchant_id: id,
                name,
                city,
                mcc,
                bank_bin: bank,
                account,
                commune,
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
        AdminCommand::FeeCatalogue { collector, items } => {
            let mut parsed = Vec::with_capacity(items.len());
            for text in &items {
                let parts: Vec<&str> = text.split('|').map(str::trim).collect();
                let [code, name, price, unit, basis] = parts[..] else {
                    return Err(Failure::new(
                        "usage",
                        format!("--item {text:?} is not CODE|name|price|unit|legal basis"),
                    ));
                };
                let unit_price = price.replace('.', "").parse::<u64>().map_err(|_| {
                    Failure::new("usage", format!("{price:?} is not a price in whole đồng"))
                })?;
                parsed.push(pb::FeeItem {
                    code: code.to_string(),
                    name: name.to_string(),
                    unit_price,
                    unit: unit.to_string(),
                    legal_basis: basis.to_string(),
                });
            }
            let req = pb::SetFeeCatalogueRequest {
                collector_id: collector,
                items: parsed,
            };
            let r = client
                .set_fee_catalogue(credentials.sign("/paymentswitch.v1.Admin/SetFeeCatalogue", req))
                .await?
                .into_inner();
            Ok(if json {
                let items: Vec<_> = r
                    .items
                    .iter()
                    .map(|i| json!({"code": i.code, "name": i.name, "unit_price": i.unit_price, "unit": i.unit, "legal_basis": i.legal_basis}))
                    .collect();
                json!({"collector_id": r.collector_id, "commune": r.commune, "items": items})
                    .to_string()
            } else {
                format!(
                    "{} ({}): {} fee items\n",
                    r.collector_id,
                    r.commune,
                    r.items.len()
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
        AdminCommand::Commune {
            id,
            name,
            district,
            pilot,
        } => {
            let req = pb::ProvisionCommuneRequest {
                commune_id: id,
                name,
                district,
                pilot,
            };
            let c = client
                .provision_commune(
                    credentials.sign("/paymentswitch.v1.Admin/ProvisionCommune", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"commune_id": c.commune_id, "name": c.name, "district": c.district, "pilot": c.pilot}).to_string()
            } else {
                format!("commune {} ({}, {})\n", c.commune_id, c.name, c.district)
            })
        }
        AdminCommand::Report {
            month,
            quarter,
            commune,
            format,
            out,
        } => {
            let period = month.or(quarter).unwrap_or_default();
            if !["table", "json", "csv", "xlsx"].contains(&format.as_str()) {
                return Err(Failure::new(
                    "usage",
                    format!("--format is table, json, csv or xlsx, not {format:?}"),
                ));
            }
            if format == "xlsx" && out.is_none() {
                return Err(Failure::new("usage", "xlsx needs --out FILE".to_string()));
            }
            let mut settlement =
                proto::v1::settlement_client::SettlementClient::new(profile.connect().await?);
            let req = pb::GetPilotReportRequest { period, commune };
            let r = settlement
                .get_pilot_report(
                    credentials.sign("/paymentswitch.v1.Settlement/GetPilotReport", req),
                )
                .await?
                .into_inner();
            let bytes = match format.as_str() {
                "json" => report_json(&r).to_string().into_bytes(),
                "csv" => pos_agent::report::csv(&r).into_bytes(),
                "xlsx" => pos_agent::report::xlsx(
                    &r,
                    &pos_agent::receipt::vietnam_time(r.made_at_ms)[..10],
                )
                .map_err(|e| Failure::new("report", e))?,
                _ => pos_agent::report::table(&r).into_bytes(),
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .map_err(|e| Failure::new("io", format!("{}: {e}", path.display())))?;
                    Ok(if json {
                        json!({"period": r.period, "format": format, "out": path, "units": r.units.len()})
                            .to_string()
                    } else {
                        format!("report {} written to {}\n", r.period, path.display())
                    })
                }
                None => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            }
        }
        AdminCommand::ReportCheck { repair } => {
            let mut settlement =
                proto::v1::settlement_client::SettlementClient::new(profile.connect().await?);
            let req = pb::CheckPilotReportRequest { repair };
            let r = settlement
                .check_pilot_report(
                    credentials.sign("/paymentswitch.v1.Settlement/CheckPilotReport", req),
                )
                .await?
                .into_inner();
            Ok(if json {
                json!({"differing": r.differing, "repaired": r.repaired}).to_string()
            } else if r.differing.is_empty() {
                "the report's aggregates equal a rebuild from the transactions\n".to_string()
            } else {
                format!(
                    "{} aggregates differ from a rebuild{}:\n{}\n",
                    r.differing.len(),
                    if r.repaired { " (repaired)" } else { "" },
                    r.differing.join("\n")
                )
            })
        }
    }
}

/// The report as one JSON object, field by field.
fn report_json(r: &pb::PilotReport) -> serde_json::Value {
    let units: Vec<serde_json::Value> = r
        .units
        .iter()
        .map(|u| {
            let products: Vec<serde_json::Value> = u
                .products
                .iter()
                .map(|p| {
                    json!({"product": p.product, "count": p.count, "value": p.value,
                        "failed": p.failed, "reversed": p.reversed,
                        "previous_count": p.previous_count, "previous_value": p.previous_value})
                })
                .collect();
            json!({"level": u.level, "id": u.id, "name": u.name, "commune": u.commune,
                "district": u.district, "pilot": u.pilot, "products": products,
                "active_terminals": u.active_terminals, "active_merchants": u.active_merchants,
                "new_merchants": u.new_merchants, "distinct_customers": u.distinct_customers,
                "bills": u.bills, "bills_cashless": u.bills_cashless,
                "card_count": u.card_count, "card_value": u.card_value})
        })
        .collect();
    json!({"period": r.period, "previous_period": r.previous_period, "first_day": r.first_day,
        "last_day": r.last_day, "made_at_ms": r.made_at_ms, "bank_bin": r.bank_bin,
        "commune": r.commune, "units": units})
}
