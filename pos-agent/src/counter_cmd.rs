//! `pos-agent counter`: serve the teller's screen; manage its tellers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use pos_agent::client::{Failure, Profile};
use pos_agent::counter::{self, tellers};

#[derive(Subcommand)]
pub enum CounterCommand {
    /// Serve the counter's screen to the browser on this PC.
    Serve {
        /// Where the browser reaches the counter: loopback unless the
        /// screen is on another machine.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: String,
        /// The PIN window (the agent's PIN entry where no PIN pad is
        /// attached), on an origin of its own.
        #[arg(long, default_value = "127.0.0.1:8701")]
        pin_listen: String,
        #[arg(long, default_value_t = 15)]
        idle_minutes: u32,
        /// `HOST:PORT` (a network printer, raw port 9100), a device file
        /// (`/dev/usb/lp0`) or a file; absent: receipts are only kept in
        /// the state directory's `printed/`.
        #[arg(long, env = "POS_PRINTER")]
        printer: Option<String>,
        /// Roll width in mm: 58 or 80.
        #[arg(long, env = "POS_PAPER", default_value = "80")]
        paper: String,
    },
    /// The counter's tellers (the head of the post office sets them).
    #[command(subcommand)]
    Teller(TellerCommand),
}

#[derive(Subcommand)]
pub enum TellerCommand {
    /// Add a teller, or give one a new password. The password is read
    /// from POS_COUNTER_PASSWORD or, without it, the first line of
    /// standard input.
    Set {
        /// Sign-in name: lower-case letters, digits, '.', '_', '-'.
        name: String,
        /// As receipts print it ("Nguyễn Thị Lan").
        #[arg(long)]
        full_name: String,
    },
    /// Stop a teller from signing in.
    Disable {
        name: String,
    },
    List,
}

/// The counter's state directory: beside the profile, named after it.
pub fn state_dir(profile: &Path) -> PathBuf {
    let stem = profile
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("counter");
    profile
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{stem}-counter"))
}

pub async fn run(
    profile_path: &Path,
    command: CounterCommand,
    json: bool,
) -> Result<String, Failure> {
    let state = state_dir(profile_path);
    match command {
        CounterCommand::Teller(t) => teller(&state, t, json),
        CounterCommand::Serve {
            listen,
            pin_listen,
            idle_minutes,
            printer,
            paper,
        } => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .try_init();
            let profile = Profile::load(profile_path)?;
            let paper =
                pos_agent::receipt::Paper::parse(&paper).map_err(|m| Failure::new("usage", m))?;
            let printer = printer
                .as_deref()
                .map(pos_agent::receipt::escpos::Target::parse)
                .transpose()
                .map_err(|m| Failure::new("usage", m))?;
            let bind = |a: String| async move {
                tokio::net::TcpListener::bind(&a)
                    .await
                    .map_err(|e| Failure::new("usage", format!("cannot listen on {a}: {e}")))
            };
            let listener = bind(listen).await?;
            let pin_listener = bind(pin_listen).await?;
            eprintln!(
                "counter: http://{} (PIN window http://{}), state in {}",
                listener.local_addr().map_err(|e| e.to_string())?,
                pin_listener.local_addr().map_err(|e| e.to_string())?,
                state.display()
            );
            let config = counter::Config {
                profile,
                state_dir: state,
                printer,
                paper,
                idle_timeout_ms: i64::from(idle_minutes) * 60_000,
                pin_timeout_ms: 120_000,
                now_ms: Arc::new(proto::auth::now_ms),
                forward_backoff_max_ms: 30_000,
            };
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            counter::run(listener, pin_listener, config, shutdown)
                .await
                .map_err(Failure::from)?;
            Ok(String::new())
        }
    }
}

fn teller(state: &Path, command: TellerCommand, json: bool) -> Result<String, Failure> {
    let mut book = tellers::Book::load(state)?;
    match command {
        TellerCommand::Set { name, full_name } => {
            let password = match std::env::var("POS_COUNTER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Failure::from(format!("reading the password: {e}")))?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            book.set(&name, &full_name, &password)?;
            book.save(state)?;
            Ok(if json {
                serde_json::json!({"teller": name, "full_name": full_name}).to_string()
            } else {
                format!("teller {name} ({full_name}) can sign in at this counter\n")
            })
        }
        TellerCommand::Disable { name } => {
            book.disable(&name)?;
            book.save(state)?;
            Ok(if json {
                serde_json::json!({"teller": name, "disabled": true}).to_string()
            } else {
                format!("teller {name} can no longer sign in\n")
            })
        }
        TellerCommand::List => Ok(if json {
            let list: Vec<_> = book
                .tellers
                .iter()
                .map(|t| serde_json::json!({"teller": t.name, "full_name": t.full_name, "disabled": t.disabled}))
                .collect();
            serde_json::json!({ "tellers": list }).to_string()
        } else {
            book.tellers
                .iter()
                .map(|t| {
                    format!(
                        "{:<16} {}{}\n",
                        t.name,
                        t.full_name,
                        if t.disabled { " (disabled)" } else { "" }
                    )
                })
                .collect()
        }),
    }
}
