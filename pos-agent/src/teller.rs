//! Teller commands: name inquiry, cash-in, transactions.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use proto::v1 as pb;
use proto::v1::teller_client::TellerClient;
use serde_json::{Value, json};

use crate::client::{Failure, Profile, retryable};

#[derive(Subcommand)]
pub enum TellerCommand {
    /// The account holder's name, before any money moves.
    NameInquiry {
        #[arg(long)]
        bank: String,
        #[arg(long)]
        account: String,
    },
    /// Credit a customer's bank account against cash at the counter.
    CashIn {
        #[arg(long)]
        bank: String,
        #[arg(long)]
        account: String,
        /// Whole đồng.
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        /// Reuse to retry a request whose answer was lost (default: new).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Soft ATM: pay out cash against a withdrawal code from the bank app.
    #[command(subcommand)]
    CashOut(CashOutCommand),
    /// Transactions of this terminal.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Open or close the terminal's shift with the counted drawer.
    #[command(subcommand)]
    Shift(ShiftCommand),
    /// What is left of this counter's limits today and this month (the
    /// agent limits of Circular 07/2024); with --bank and --account, the
    /// customer's too.
    Limits {
        #[arg(long, default_value = "", requires = "account")]
        bank: String,
        #[arg(long, default_value = "", requires = "bank")]
        account: String,
    },
    /// What a customer's bank app would do (simulated banks only).
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Subcommand)]
pub enum CashOutCommand {
    /// Verify the code and reserve the cash (answers PENDING).
    Start {
        #[arg(long)]
        bank: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        code: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The cash was paid out.
    Confirm { id: String },
    /// The cash was not paid out: the bank returns the money.
    Cancel { id: String },
}

#[derive(Subcommand)]
pub enum ShiftCommand {
    /// Open with the cash counted in the drawer.
    Open {
        #[arg(long)]
        cash: u64,
    },
    /// Close with the cash counted; prints the variance.
    Close {
        #[arg(long)]
        cash: u64,
    },
}

#[derive(Subcommand)]
pub enum SimCommand {
    /// Get a one-time cash withdrawal code from the customer's bank.
    WithdrawalCode {
        #[arg(long)]
        bank: String,
        #[arg(long)]
        account: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
    },
}

#[derive(Subcommand)]
pub enum TxCommand {
    /// One transaction and its receipt.
    Show { id: String },
    /// Print a transaction's receipt on a thermal printer (ESC/POS), or
    /// save it as PNG or PDF: a reprint.
    Print {
        id: String,
        /// `HOST:PORT` (a network printer, raw port 9100), a device file
        /// (`/dev/usb/lp0`), or a file to take the printer's bytes.
        #[arg(long, env = "POS_PRINTER")]
        printer: Option<String>,
        /// Roll width in mm: 58 or 80.
        #[arg(long, env = "POS_PAPER", default_value = "80")]
        paper: String,
        #[arg(long)]
        png: Option<std::path::PathBuf>,
        #[arg(long)]
        pdf: Option<std::path::PathBuf>,
        /// The teller's name, printed on the receipt.
        #[arg(long, env = "POS_TELLER", default_value = "")]
        teller: String,
    },
    /// This terminal's transactions, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
}

fn status_name(s: i32) -> &'static str {
    match pb::TxStatus::try_from(s) {
        Ok(pb::TxStatus::Completed) => "completed",
        Ok(pb::TxStatus::Pending) => "pending",
        Ok(pb::TxStatus::Failed) => "failed",
        Ok(pb::TxStatus::Reversed) => "reversed",
        _ => "unknown",
    }
}

fn kind_name(k: i32) -> &'static str {
    match pb::TxKind::try_from(k) {
        Ok(pb::TxKind::CashIn) => "cash_in",
        Ok(pb::TxKind::CashOut) => "cash_out",
        Ok(pb::TxKind::QrPayment) => "qr_payment",
        Ok(pb::TxKind::BillPayment) => "bill_payment",
        Ok(pb::TxKind::TopUp) => "top_up",
        _ => "unknown",
    }
}

pub fn tx_json(t: &pb::Transaction) -> Value {
    let mut v = json!({
        "transaction_id": t.transaction_id,
        "status": status_name(t.status),
        "kind": kind_name(t.kind),
        "amount": t.amount,
        "fee": t.fee,
        "bank_bin": t.bank_bin,
        "bank_name": t.bank_name,
        "account_masked": t.account_masked,
        "terminal_id": t.terminal_id,
        "client_request_id": t.client_request_id,
        "created_at_ms": t.created_at_ms,
    });
    if !t.error_code.is_empty() {
        v["error_code"] = t.error_code.clone().into();
        v["error_message"] = t.error_message.clone().into();
    }
    if !t.bank_reference.is_empty() {
        v["bank_reference"] = t.bank_reference.clone().into();
    }
    let optional = [
        ("qr_id", &t.qr_id),
        ("qr_payload", &t.qr_payload),
        ("merchant_id", &t.merchant_id),
        ("order_reference", &t.order_reference),
        ("biller", &t.biller),
        ("bill_customer", &t.bill_customer),
        ("funding", &t.funding),
        ("paid_by_transaction_id", &t.paid_by_transaction_id),
        ("pays_for_transaction_id", &t.pays_for_transaction_id),
    ];
    for (k, value) in optional {
        if !value.is_empty() {
            v[k] = value.clone().into();
        }
    }
    if !t.bill_ids.is_empty() {
        v["bill_ids"] = t.bill_ids.clone().into();
    }
    if t.deadline_ms != 0 {
        v["deadline_ms"] = t.deadline_ms.into();
    }
    v
}

pub fn new_request_id() -> String {
    format!("pos-{}", proto::auth::nonce())
}

/// Run a teller command; `Ok` holds what to print.
pub async fn run(profile: &Path, command: TellerCommand, json: bool) -> Result<String, Failure> {
    let profile = Profile::load(profile)?;
    if profile.role != "teller" {
        return Err(Failure::from(format!(
            "this is a {} profile; teller commands need a teller's",
            profile.role
        )));
    }
    let credentials = profile.credentials()?;

    let channel = profile.connect().await?;
    let mut client = TellerClient::new(channel.clone());
    // Retries re-sign (fresh timestamp and nonce) and keep the request id.
    macro_rules! call {
        ($method:ident, $path:literal, $msg:expr) => {{
            let mut attempt = 0;
            loop {
                match client.$method(credentials.sign($path, $msg.clone())).await {
                    Ok(r) => break Ok::<_, Failure>(r.into_inner()),
                    Err(s) if retryable(&s) && attempt < 3 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                    Err(s) => break Err(Failure::from(s)),
                }
            }
        }};
    }
    match command {
        TellerCommand::NameInquiry { bank, account } => {
            let msg = pb::NameInquiryRequest {
                bank_bin: bank,
                account,
            };
            let r = call!(name_inquiry, "/paymentswitch.v1.Teller/NameInquiry", msg)?;
            Ok(if json {
                json!({"bank_bin": r.bank_bin, "bank_name": r.bank_name, "account_masked": r.account_masked, "account_name": r.account_name}).to_string()
            } else {
                format!(
                    "{} {} ({})\n{}\n",
                    r.bank_name, r.account_masked, r.bank_bin, r.account_name
                )
            })
        }
        TellerCommand::CashIn {
            bank,
            account,
            amount,
            request_id,
        } => {
            let msg = pb::CashInRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                bank_bin: bank,
                account,
                amount: amount.dong()?,
                teller: crate::client::teller(),
                offline_taken_at_ms: 0,
            };
            let r = call!(cash_in, "/paymentswitch.v1.Teller/CashIn", msg)?;
            Ok(render(&r, json))
        }
        TellerCommand::CashOut(CashOutCommand::Start {
            bank,
            account,
            code,
            amount,
            request_id,
        }) => {
            let msg = pb::CashOutStartRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                bank_bin: bank,
                account,
                code,
                amount: amount.dong()?,
                teller: crate::client::teller(),
            };
            let r = call!(cash_out_start, "/paymentswitch.v1.Teller/CashOutStart", msg)?;
            Ok(render(&r, json))
        }
        TellerCommand::CashOut(CashOutCommand::Confirm { id }) => {
            let msg = pb::CashOutConfirmRequest { transaction_id: id };
            let r = call!(
                cash_out_confirm,
                "/paymentswitch.v1.Teller/CashOutConfirm",
                msg
            )?;
            Ok(render(&r, json))
        }
        TellerCommand::CashOut(CashOutCommand::Cancel { id }) => {
            let msg = pb::CashOutCancelRequest { transaction_id: id };
            let r = call!(
                cash_out_cancel,
                "/paymentswitch.v1.Teller/CashOutCancel",
                msg
            )?;
            Ok(render(&r, json))
        }
        TellerCommand::Sim(SimCommand::WithdrawalCode {
            bank,
            account,
            amount,
        }) => {
            let mut sim = proto::v1::simulator_client::SimulatorClient::new(channel);

            let msg = pb::IssueWithdrawalCodeRequest {
                bank_bin: bank,
                account,
                amount: amount.dong()?,
            };
            let r = sim
                .issue_withdrawal_code(
                    credentials.sign("/paymentswitch.v1.Simulator/IssueWithdrawalCode", msg),
                )
                .await
                .map_err(Failure::from)?
                .into_inner();
            Ok(if json {
                json!({"code": r.code, "expires_at_ms": r.expires_at_ms}).to_string()
            } else {
                format!("{}\n", r.code)
            })
        }
        TellerCommand::Shift(ShiftCommand::Open { cash }) => {
            let msg = pb::OpenShiftRequest { counted_cash: cash };
            let r = call!(open_shift, "/paymentswitch.v1.Teller/OpenShift", msg)?;
            Ok(shift_text(&r, json))
        }
        TellerCommand::Shift(ShiftCommand::Close { cash }) => {
            let msg = pb::CloseShiftRequest { counted_cash: cash };
            let r = call!(close_shift, "/paymentswitch.v1.Teller/CloseShift", msg)?;
            Ok(shift_text(&r, json))
        }
        TellerCommand::Limits { bank, account } => {
            let msg = pb::GetLimitsRequest {
                bank_bin: bank,
                account,
            };
            let r = call!(get_limits, "/paymentswitch.v1.Teller/GetLimits", msg)?;
            Ok(if json {
                let limits: Vec<Value> = r
                    .limits
                    .iter()
                    .map(|l| {
                        json!({"limit": l.limit, "max": l.max, "used": l.used, "left": l.left, "period": l.period})
                    })
                    .collect();
                json!({ "limits": limits }).to_string()
            } else {
                r.limits
                    .iter()
                    .map(|l| {
                        let max = if l.max == u64::MAX {
                            "unlimited".to_string()
                        } else {
                            format!("{} VND", l.max)
                        };
                        format!(
                            "{:<20} {:<10} used {} VND of {max}, {} VND left\n",
                            l.limit, l.period, l.used, l.left
                        )
                    })
                    .collect()
            })
        }
        TellerCommand::Tx(TxCommand::Show { id }) => {
            let msg = pb::GetTransactionRequest { transaction_id: id };
            let r = call!(
                get_transaction,
                "/paymentswitch.v1.Teller/GetTransaction",
                msg
            )?;
            Ok(render(&r, json))
        }
        TellerCommand::Tx(TxCommand::Print {
            id,
            printer,
            paper,
            png,
            pdf,
            teller,
        }) => {
            let paper =
                pos_agent::receipt::Paper::parse(&paper).map_err(|m| Failure::new("usage", m))?;
            let printer = printer
                .as_deref()
                .map(pos_agent::receipt::escpos::Target::parse)
                .transpose()
                .map_err(|m| Failure::new("usage", m))?;
            if printer.is_none() && png.is_none() && pdf.is_none() {
                return Err(Failure::new(
                    "usage",
                    "say where: --printer, --png or --pdf".to_string(),
                ));
            }
            let msg = pb::GetTransactionRequest { transaction_id: id };
            let r = call!(
                get_transaction,
                "/paymentswitch.v1.Teller/GetTransaction",
                msg
            )?;
            let t = r.transaction.unwrap_or_default();
            let counter = pos_agent::receipt::Counter {
                post_office_name: profile.post_office_name.clone().unwrap_or_default(),
                teller,
            };
            let raster = pos_agent::receipt::render::render(
                &pos_agent::receipt::Receipt::of(&t, &counter),
                paper,
            );
            let mut done = Vec::new();
            if let Some(target) = &printer {
                pos_agent::receipt::escpos::print(&raster, target)
                    .map_err(|m| Failure::new("printer", m))?;
                done.push(format!("printed on {target:?}"));
            }
            for (path, bytes) in [
                (&png, png.as_ref().map(|_| raster.png())),
                (
                    &pdf,
                    pdf.as_ref().map(|_| pos_agent::receipt::pdf::pdf(&raster)),
                ),
            ] {
                if let (Some(path), Some(bytes)) = (path, bytes) {
                    std::fs::write(path, bytes)
                        .map_err(|e| Failure::new("io", format!("{}: {e}", path.display())))?;
                    done.push(format!("wrote {}", path.display()));
                }
            }
            Ok(if json {
                json!({"transaction_id": t.transaction_id, "done": done, "height_dots": raster.height})
                    .to_string()
            } else {
                format!("{}\n", done.join("; "))
            })
        }
        TellerCommand::Tx(TxCommand::List {
            page_size,
            page_token,
        }) => {
            let msg = pb::ListTransactionsRequest {
                page_size,
                page_token,
            };
            let r = call!(
                list_transactions,
                "/paymentswitch.v1.Teller/ListTransactions",
                msg
            )?;

            Ok(if json {
                json!({"transactions": r.transactions.iter().map(tx_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token}).to_string()
            } else {
                let mut out = String::new();
                for t in &r.transactions {
                    out.push_str(&format!(
                        "{}  {:<9} {:<8} {:>12} VND  {} {}\n",
                        t.transaction_id,
                        status_name(t.status),
                        kind_name(t.kind),
                        t.amount,
                        t.bank_name,
                        t.account_masked
                    ));
                }
                if !r.next_page_token.is_empty() {
                    out.push_str(&format!("more: --page-token {}\n", r.next_page_token));
                }
                out
            })
        }
    }
}

fn shift_text(s: &pb::Shift, json: bool) -> String {
    if json {
        return json!({
            "shift_id": s.shift_id, "terminal_id": s.terminal_id, "status": s.status,
            "opened_at_ms": s.opened_at_ms, "opening_cash": s.opening_cash, "opening_expected": s.opening_expected,
            "closed_at_ms": s.closed_at_ms, "expected_cash": s.expected_cash, "counted_cash": s.counted_cash, "variance": s.variance,
        })
        .to_string();
    }
    if s.status == "open" {
        format!(
            "shift {} open at {} with {} VND counted ({} expected)\n",
            s.shift_id, s.terminal_id, s.opening_cash, s.opening_expected
        )
    } else {
        format!(
            "shift {} closed at {}: counted {} VND, expected {} VND, variance {} VND\n",
            s.shift_id, s.terminal_id, s.counted_cash, s.expected_cash, s.variance
        )
    }
}

pub fn render(r: &pb::TransactionResponse, json: bool) -> String {
    match (&r.transaction, json) {
        (Some(t), true) => {
            let mut v = tx_json(t);
            v["receipt"] = r.receipt.clone().into();
            v.to_string()
        }
        (Some(t), false) if !t.qr_payload.is_empty() => {
            format!("{}Ma QR / code:    {}\n", r.receipt, t.qr_payload)
        }
        _ => r.receipt.clone(),
    }
}
