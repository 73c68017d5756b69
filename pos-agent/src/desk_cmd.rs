//! `pos-agent desk`: a commune one-stop desk's fee screen and kiosk.

use std::path::Path;

use clap::Subcommand;
use pos_agent::client::{Failure, Profile};

#[derive(Subcommand)]
pub enum DeskCommand {
    /// Serve the desk's screen (`/`) and the citizen's kiosk (`/kiosk`).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8702")]
        listen: String,
        /// `HOST:PORT`, a device file or a file for fee receipts; absent:
        /// only the copy in the state directory's `printed/`.
        #[arg(long, env = "POS_PRINTER")]
        printer: Option<String>,
        #[arg(long, env = "POS_PAPER", default_value = "80")]
        paper: String,
        /// How long a code can be paid (0: the switch's default).
        #[arg(long, default_value_t = 0)]
        expires_in_s: u32,
    },
}

pub async fn run(profile_path: &Path, command: DeskCommand) -> Result<String, Failure> {
    let DeskCommand::Serve {
        listen,
        printer,
        paper,
        expires_in_s,
    } = command;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let profile = Profile::load(profile_path)?;
    let state_dir = crate::counter_cmd::state_dir(profile_path);
    let paper = pos_agent::receipt::Paper::parse(&paper).map_err(|m| Failure::new("usage", m))?;
    let printer = printer
        .as_deref()
        .map(pos_agent::receipt::escpos::Target::parse)
        .transpose()
        .map_err(|m| Failure::new("usage", m))?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Failure::new("usage", format!("cannot listen on {listen}: {e}")))?;
    eprintln!(
        "desk: http://{0}/ (kiosk http://{0}/kiosk), state in {1}",
        listener.local_addr().map_err(|e| e.to_string())?,
        state_dir.display()
    );
    let config = pos_agent::desk::Config {
        profile,
        state_dir,
        printer,
        paper,
        expires_in_s,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    pos_agent::desk::run(listener, config, shutdown)
        .await
        .map_err(Failure::from)?;
    Ok(String::new())
}
