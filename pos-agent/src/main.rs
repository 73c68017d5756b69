//! `pos-agent`: the teller's and merchant's command line.

use std::process::ExitCode;

use clap::Parser;

mod qr_cmd;

#[derive(Parser)]
#[command(
    name = "pos-agent",
    version,
    about = "Teller and merchant command line for the payment switch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Decode, generate and display VietQR codes.
    #[command(subcommand)]
    Qr(qr_cmd::QrCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Qr(c) => qr_cmd::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pos-agent: {message}");
            ExitCode::FAILURE
        }
    }
}
