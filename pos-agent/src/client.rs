//! Profiles and signed calls to the switch.

use std::path::Path;
use std::time::Duration;

use proto::auth::Credentials;
use serde::Deserialize;
use tonic::transport::Channel;

/// A client profile as the switch writes it (`data/profiles/<id>.toml`).
#[derive(Deserialize)]
pub struct Profile {
    pub role: String,
    pub id: String,
    /// The switch's address, e.g. `http://127.0.0.1:50051`, or
    /// `https://…` for a switch that listens with TLS.
    pub switch: String,
    secret: String,
    /// With `https://`: the CA (PEM) that issued the switch's certificate.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// With `https://`, for a switch that asks callers for certificates:
    /// this caller's certificate and key (PEM).
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    /// A teller's post office id (`tho-tang`).
    #[serde(default)]
    pub post_office: Option<String>,
    /// A teller's post office as its receipts print it ("Bưu điện Thổ
    /// Tang"); absent: its id.
    #[serde(default)]
    pub post_office_name: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("role", &self.role)
            .field("id", &self.id)
            .field("switch", &self.switch)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn credentials(&self) -> Result<Credentials, String> {
        Credentials::from_hex(&self.id, &self.secret)
            .ok_or_else(|| "the profile's secret is not hex".to_string())
    }

    /// A channel that connects when first used (and again after a loss):
    /// the counter starts, and takes what may wait, with the switch away.
    pub fn connect_lazy(
        &self,
        connect_timeout_ms: u64,
        timeout_ms: u64,
    ) -> Result<Channel, String> {
        let tls = proto::tls::ClientTls {
            ca_file: self.ca.as_deref(),
            cert_file: self.client_cert.as_deref(),
            key_file: self.client_key.as_deref(),
        };
        Ok(tls
            .endpoint(&self.switch)
            .map_err(|e| format!("switch {}: {e}", self.switch))?
            .connect_timeout(Duration::from_millis(connect_timeout_ms))
            .timeout(Duration::from_millis(timeout_ms))
            .connect_lazy())
    }

    pub async fn connect(&self) -> Result<Channel, String> {
        // An https:// switch needs the profile's `ca`, and its
        // `client_cert` and `client_key` where the switch asks for one.
        let tls = proto::tls::ClientTls {
            ca_file: self.ca.as_deref(),
            cert_file: self.client_cert.as_deref(),
            key_file: self.client_key.as_deref(),
        };
        tls.endpoint(&self.switch)
            .map_err(|e| {
                format!(
                    "switch {}: {e} (profile fields `ca`, `client_cert`, `client_key`)",
                    self.switch
                )
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .map_err(|e| format!("cannot reach the switch at {}: {e}", self.switch))
    }
}

/// An error as `--json` prints it.
pub struct Failure {
    pub code: String,
    pub message: String,
    pub transaction_id: Option<String>,
    pub status: Option<String>,
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        let md = |k: &str| {
            s.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let code = md("x-error-code").unwrap_or_else(|| grpc_code_name(s.code()).to_string());
        let message = s
            .message()
            .strip_prefix(&format!("{code}: "))
            .unwrap_or(s.message())
            .to_string();
        Failure {
            code,
            message,
            transaction_id: md("x-transaction-id"),
            status: md("x-transaction-status"),
        }
    }
}

impl Failure {
    /// A failure the client found itself, under `code`.
    pub fn new(code: &str, message: String) -> Failure {
        Failure {
            code: code.to_string(),
            message,
            transaction_id: None,
            status: None,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            code: "client".into(),
            message,
            transaction_id: None,
            status: None,
        }
    }
}

fn grpc_code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Whether a call may be sent again unchanged (the switch never saw it, or
/// the answer was lost): transport failures and `UNAVAILABLE` without a
/// business error code.
pub fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    ) && s.metadata().get("x-error-code").is_none()
}

/// The teller serving at this counter, as `POS_TELLER` says: sent with
/// every counter request and kept on its record (empty: not given).
pub fn teller() -> String {
    std::env::var("POS_TELLER").unwrap_or_default()
}
