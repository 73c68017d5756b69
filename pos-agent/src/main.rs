//! `pos-agent`: the teller's and merchant's command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

mod admin_cmd;
mod amount;
mod counter_cmd;
mod desk_cmd;
use pos_agent::client;
mod merchant_cmd;
mod qr_cmd;

mod settlement_cmd;
mod teller;

#[derive(Parser)]
#[command(
    name = "pos-agent",
    version,
    about = "Teller and merchant command line for the payment switch"
)]
struct Cli {
    /// Client profile written by the switch (data/profiles/<terminal>.toml).
    #[arg(long, env = "POS_AGENT_PROFILE", global = true)]
    profile: Option<PathBuf>,
    /// One JSON object per command instead of readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Decode, generate and display VietQR codes.
    #[command(subcommand)]
    Qr(qr_cmd::QrCommand),
    /// Operator commands (an operator's profile).
    #[command(subcommand)]
    Admin(admin_cmd::AdminCommand),
    /// A merchant's payments (a merchant's profile).
    #[command(subcommand)]
    Payments(merchant_cmd::PaymentsCommand),
    /// As the customer's bank app: pay a scanned code for a customer (a
    /// bank's profile).
    PayQr {
        #[arg(long)]
        payer_account: String,
        #[arg(long)]
        payload: String,
        /// Whole đồng; required for a static code.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Bills at the counter (a teller's profile).
    #[command(subcommand)]
    Bill(merchant_cmd::BillCommand),
    /// Prepaid airtime for a Viettel, VinaPhone or MobiFone number (a
    /// teller's profile).
    Topup(merchant_cmd::TopUpArgs),
    /// Settlement windows and reports (an operator's or a bank's profile).
    #[command(subcommand)]
    Settlement(settlement_cmd::SettlementCommand),
    /// As a bank: reconcile its statement (CSV) for a closed window; as an
    /// operator, a biller's (`--biller EVN`).
    Reconcile {
        #[arg(long)]
        window: u64,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "")]
        biller: String,
    },
    /// Post offices' e-float and cash (an operator's profile).
    #[command(subcommand)]
    Float(settlement_cmd::FloatCommand),
    /// The teller's counter screen, in a browser on the counter PC (a
    /// teller's profile).
    #[command(subcommand)]
    Counter(counter_cmd::CounterCommand),
    /// A commune one-stop desk's fee screen and the citizen's kiosk (a fee
    /// collector's profile).
    #[command(subcommand)]
    Desk(desk_cmd::DeskCommand),
    #[command(flatten)]
    Teller(teller::TellerCommand),
}

/// An argument error: clap's text, or with `--json` one JSON object on
/// stdout (`usage`, exit 2) like every other failure. Help and version
/// print as usual.
fn usage(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args().any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || informational {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let rendered = e.render().to_string();
    // The error's own lines, before clap's usage and hint.
    let message = rendered
        .lines()
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    println!(
        "{}",
        serde_json::json!({"error": {"code": "usage", "message": message}})
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(e),
    };
    match cli.command {
        Command::Qr(c) if !matches!(c, qr_cmd::QrCommand::Create { .. }) => {
            match qr_cmd::run(c, cli.json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("pos-agent: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            let Some(profile) = cli.profile else {
                eprintln!("pos-agent: --profile FILE is needed to talk to the switch");
                return ExitCode::from(2);
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let result = runtime.block_on(async {
                match command {
                    Command::Admin(c) => admin_cmd::run(&profile, c, cli.json).await,
                    Command::Teller(c) => teller::run(&profile, c, cli.json).await,
                    Command::Counter(c) => counter_cmd::run(&profile, c, cli.json).await,
                    Command::Desk(c) => desk_cmd::run(&profile, c).await,
                    Command::Qr(qr_cmd::QrCommand::Create {
                        amount,
                        reference,
                        purpose,
                        expires_in_s,
                        request_id,
                    }) => {
                        let c = merchant_cmd::Command::CreateQr {
                            amount,
                            reference,
                            purpose,
                            expires_in_s,
                            request_id,
                        };
                        merchant_cmd::run(&profile, c, cli.json).await
                    }
                    Command::Qr(_) => unreachable!("handled above"),
                    Command::Payments(c) => {
                        merchant_cmd::run(&profile, merchant_cmd::Command::Payments(c), cli.json)
                            .await
                    }
                    Command::PayQr {
                        payer_account,
                        payload,
                        amount,
                        request_id,
                    } => {
                        let c = merchant_cmd::Command::PayQr {
                            payer_account,
                            payload,
                            amount,
                            request_id,
                        };
                        merchant_cmd::run(&profile, c, cli.json).await
                    }
                    Command::Settlement(c) => {
                        settlement_cmd::run(
                            &profile,
                            settlement_cmd::Command::Settlement(c),
                            cli.json,
                        )
                        .await
                    }
                    Command::Reconcile {
                        window,
                        file,
                        biller,
                    } => {
                        let c = settlement_cmd::Command::Reconcile {
                            window,
                            file,
                            biller,
                        };
                        settlement_cmd::run(&profile, c, cli.json).await
                    }
                    Command::Float(c) => {
                        settlement_cmd::run(&profile, settlement_cmd::Command::Float(c), cli.json)
                            .await
                    }
                    Command::Bill(c) => {
                        merchant_cmd::run(&profile, merchant_cmd::Command::Bill(c), cli.json).await
                    }
                    Command::Topup(a) => {
                        merchant_cmd::run(&profile, merchant_cmd::Command::TopUp(a), cli.json).await
                    }
                }
            });
            match result {
                Ok(out) if out.is_empty() => ExitCode::SUCCESS,
                Ok(out) => {
                    // A closed pipe (`| head`) is not an error of ours.
                    let mut stdout = std::io::stdout().lock();
                    let _ = if cli.json {
                        writeln!(stdout, "{out}")
                    } else {
                        write!(stdout, "{out}")
                    };
                    ExitCode::SUCCESS
                }
                Err(f) => {
                    if cli.json {
                        let mut error = serde_json::json!({"code": f.code, "message": f.message});
                        if let Some(id) = f.transaction_id {
                            error["transaction_id"] = id.into();
                        }
                        if let Some(s) = f.status {
                            error["status"] = s.into();
                        }
                        let _ = writeln!(
                            std::io::stdout(),
                            "{}",
                            serde_json::json!({ "error": error })
                        );
                    } else {
                        eprintln!("pos-agent: {}: {}", f.code, f.message);
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
