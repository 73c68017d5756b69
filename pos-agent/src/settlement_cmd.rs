//! Settlement, reconciliation and liquidity commands (an operator's or a
//! bank's profile; `float show` also a teller's).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use proto::v1 as pb;
use proto::v1::settlement_client::SettlementClient;
use serde_json::{Value, json};

use crate::client::{Failure, Profile};
use crate::teller::new_request_id;

#[derive(Subcommand)]
pub enum SettlementCommand {
    /// The windows, oldest first (the last is open).
    Windows,
    /// Close the open window; prints `window`, the id it closed.
    Close,
    /// A closed window's report (a bank: its own line).
    Report {
        #[arg(long)]
        window: u64,
        /// One participant (a BIN); a bank's profile may name only itself.
        #[arg(long)]
        bank: Option<String>,
        /// Also write the report as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Record the reference of the funds transfer that settled a window.
    Settle {
        #[arg(long)]
        window: u64,
        #[arg(long)]
        reference: String,
    },
}

#[derive(Subcommand)]
pub enum FloatCommand {
    /// Money a post office paid into the float account.
    Topup {
        #[arg(long)]
        post_office: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Cash taken from a terminal's drawer into the float account.
    Sweep {
        #[arg(long)]
        terminal: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// E-float and drawers (every post office, or one).
    Show {
        #[arg(long, default_value = "")]
        post_office: String,
    },
}

pub enum Command {
    Settlement(SettlementCommand),
    Reconcile {
        window: u64,
        file: PathBuf,
        /// Empty: the calling bank's own statement.
        biller: String,
    },
    Float(FloatCommand),
}

/// Statement bytes per streamed message.
const CHUNK_BYTES: usize = 64 * 1024;

fn window_json(w: &pb::Window) -> Value {
    json!({
        "window": w.window_id, "state": w.state, "opened_at_ms": w.opened_at_ms,
        "closed_at_ms": w.closed_at_ms, "cutoff_timestamp": w.cutoff_timestamp,
        "report_sha256": w.report_sha256, "settlement_reference": w.settlement_reference,
        "settled_at_ms": w.settled_at_ms, "transactions": w.transactions,
    })
}

fn liquidity_json(l: &pb::Liquidity) -> Value {
    json!({
        "post_office": l.post_office_id, "efloat": l.efloat, "low_float": l.low_float,
        "low_float_threshold": l.low_float_threshold,
        "drawers": l.drawers.iter().map(|d| json!({"terminal": d.terminal_id, "cash": d.cash})).collect::<Vec<_>>(),
    })
}

fn liquidity_text(l: &pb::Liquidity) -> String {
    let mut out = format!(
        "{}: e-float {} VND{}\n",
        l.post_office_id,
        l.efloat,
        if l.low_float { " (LOW)" } else { "" }
    );
    for d in &l.drawers {
        out.push_str(&format!("  {} cash {} VND\n", d.terminal_id, d.cash));
    }
    out
}

/// SHA-256 of a file, read in pieces.
/// What a statement upload for `window` signs (PROTOCOL.md): the window
/// (and a biller's code), then the file.
fn statement_digest(window: u64, biller: &str, path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ctx = if biller.is_empty() {
        proto::auth::StatementDigest::new(window)
    } else {
        proto::auth::StatementDigest::for_biller(window, biller)
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish())
}

pub async fn run(profile: &Path, command: Command, json: bool) -> Result<String, Failure> {
    let profile = Profile::load(profile)?;
    let credentials = profile.credentials()?;
    let mut client = SettlementClient::new(profile.connect().await?);
    macro_rules! call {
        ($method:ident, $path:literal, $msg:expr) => {
            client
                .$method(credentials.sign($path, $msg))
                .await
                .map(|r| r.into_inner())
                .map_err(Failure::from)
        };
    }
    match command {
        Command::Settlement(SettlementCommand::Windows) => {
            let r = call!(
                list_windows,
                "/paymentswitch.v1.Settlement/ListWindows",
                pb::ListWindowsRequest {}
            )?;
            Ok(if json {
                json!({"windows": r.windows.iter().map(window_json).collect::<Vec<_>>()})
                    .to_string()
            } else {
                r.windows
                    .iter()
                    .map(|w| {
                        format!(
                            "window {} {} transactions {} {}\n",
                            w.window_id, w.state, w.transactions, w.report_sha256
                        )
                    })
                    .collect()
            })
        }
        Command::Settlement(SettlementCommand::Close) => {
            let r = call!(
                list_windows,
                "/paymentswitch.v1.Settlement/ListWindows",
                pb::ListWindowsRequest {}
            )?;
            let open = r
                .windows
                .last()
                .map(|w| w.window_id)
                .ok_or_else(|| Failure::from("the switch listed no window".to_string()))?;
            let w = call!(
                close_window,
                "/paymentswitch.v1.Settlement/CloseWindow",
                pb::CloseWindowRequest { window_id: open }
            )?;
            Ok(if json {
                window_json(&w).to_string()
            } else {
                format!(
                    "closed window {} ({} transactions); report {}\n",
                    w.window_id, w.transactions, w.report_sha256
                )
            })
        }
        Command::Settlement(SettlementCommand::Report { window, bank, csv }) => {
            let msg = pb::GetReportRequest {
                window_id: window,
                participant: bank.unwrap_or_default(),
            };
            let r = call!(get_report, "/paymentswitch.v1.Settlement/GetReport", msg)?;
            if let Some(path) = &csv {
                std::fs::write(path, &r.csv).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(if json {
                json!({
                    "window": r.window_id, "state": r.state, "sha256": r.sha256,
                    "from_timestamp": r.from_timestamp, "cutoff_timestamp": r.cutoff_timestamp,
                    "participants": r.participants.iter().map(|p| json!({
                        "participant": p.participant, "kind": p.kind, "count": p.count,
                        "gross_debits": p.gross_debits, "gross_credits": p.gross_credits,
                        "fees": p.fees, "net": p.net,
                    })).collect::<Vec<_>>(),
                })
                .to_string()
            } else {
                format!(
                    "window {} ({}) sha256 {}\n{}",
                    r.window_id, r.state, r.sha256, r.csv
                )
            })
        }
        Command::Settlement(SettlementCommand::Settle { window, reference }) => {
            let msg = pb::SettleRequest {
                window_id: window,
                reference,
            };
            let w = call!(settle, "/paymentswitch.v1.Settlement/Settle", msg)?;
            Ok(if json {
                window_json(&w).to_string()
            } else {
                format!(
                    "window {} settled ({})\n",
                    w.window_id, w.settlement_reference
                )
            })
        }
        Command::Reconcile {
            window,
            file,
            biller,
        } => {
            let digest = statement_digest(window, &biller, &file)?;
            let first_biller = biller.clone();
            let mut f =
                std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            // Stream the file as it is read: never all of it in memory.
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::StatementChunk>(4);
            let reader = std::thread::spawn(move || -> Result<(), String> {
                let mut first = true;
                loop {
                    let mut buf = vec![0u8; CHUNK_BYTES];
                    let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 && !first {
                        return Ok(());
                    }
                    buf.truncate(n);
                    let chunk = pb::StatementChunk {
                        window_id: if first { window } else { 0 },
                        biller: if first {
                            first_biller.clone()
                        } else {
                            String::new()
                        },
                        data: buf,
                    };
                    first = false;
                    if tx.blocking_send(chunk).is_err() || n == 0 {
                        return Ok(());
                    }
                }
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let r = client
                .reconcile(credentials.sign_stream(
                    "/paymentswitch.v1.Settlement/Reconcile",
                    &digest,
                    stream,
                ))
                .await
                .map(|r| r.into_inner())
                .map_err(Failure::from)?;
            reader
                .join()
                .map_err(|_| "the file reader failed".to_string())??;
            let count = |c: &str| {
                r.classes
                    .iter()
                    .find(|x| x.class == c)
                    .map_or(0, |x| x.count)
            };
            Ok(if json {
                json!({
                    "window": r.window_id, "bank": r.bank_bin, "biller": r.biller, "statement_sha256": r.statement_sha256,
                    "position_checked": r.position_checked, "report_net": r.report_net, "statement_net": r.statement_net,
                    "lines": r.lines,
                    "matched": count("matched"), "missing_at_bank": count("missing_at_bank"),
                    "missing_at_switch": count("missing_at_switch"), "amount_mismatch": count("amount_mismatch"),
                    "status_mismatch": count("status_mismatch"), "duplicate": count("duplicate"),
                    "unreadable": count("unreadable"),
                    "classes": r.classes.iter().map(|c| json!({"class": c.class, "count": c.count, "amount": c.amount})).collect::<Vec<_>>(),
                    "exceptions_total": r.exceptions_total,
                    "exceptions": r.exceptions.iter().map(|e| json!({
                        "exception_id": e.exception_id, "class": e.class, "transaction_id": e.transaction_id,
                        "line": e.line, "reason": e.reason, "switch_amount": e.switch_amount,
                        "bank_amount": e.bank_amount, "resolution_note": e.resolution_note,
                    })).collect::<Vec<_>>(),
                })
                .to_string()
            } else {
                let who = if r.biller.is_empty() {
                    format!("bank {}", r.bank_bin)
                } else {
                    format!("biller {}", r.biller)
                };
                let mut out = format!("window {} {who}: {} lines\n", r.window_id, r.lines);
                if r.position_checked {
                    out.push_str(&format!(
                        "  settlement position {} VND, statement {} VND{}\n",
                        r.report_net,
                        r.statement_net,
                        if r.report_net == r.statement_net {
                            ""
                        } else {
                            " (DIFFER)"
                        }
                    ));
                }
                for c in &r.classes {
                    out.push_str(&format!(
                        "  {:<18} {:>8}  {:>14} VND\n",
                        c.class, c.count, c.amount
                    ));
                }
                for e in &r.exceptions {
                    out.push_str(&format!(
                        "{} {} line {} {}: {}\n",
                        e.exception_id, e.class, e.line, e.transaction_id, e.reason
                    ));
                }
                out
            })
        }
        Command::Float(FloatCommand::Topup {
            post_office,
            amount,
            request_id,
        }) => {
            let msg = pb::TopUpFloatRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                post_office_id: post_office,
                amount: amount.dong()?,
            };
            let l = call!(top_up_float, "/paymentswitch.v1.Settlement/TopUpFloat", msg)?;
            Ok(if json {
                liquidity_json(&l).to_string()
            } else {
                liquidity_text(&l)
            })
        }
        Command::Float(FloatCommand::Sweep {
            terminal,
            amount,
            request_id,
        }) => {
            let msg = pb::SweepCashRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                terminal_id: terminal,
                amount: amount.dong()?,
            };
            let l = call!(sweep_cash, "/paymentswitch.v1.Settlement/SweepCash", msg)?;
            Ok(if json {
                liquidity_json(&l).to_string()
            } else {
                liquidity_text(&l)
            })
        }
        Command::Float(FloatCommand::Show { post_office }) => {
            let msg = pb::GetLiquidityRequest {
                post_office_id: post_office,
            };
            let r = call!(
                get_liquidity,
                "/paymentswitch.v1.Settlement/GetLiquidity",
                msg
            )?;
            Ok(if json {
                json!({"post_offices": r.post_offices.iter().map(liquidity_json).collect::<Vec<_>>()}).to_string()
            } else {
                r.post_offices.iter().map(liquidity_text).collect()
            })
        }
    }
}
