//! Everything the switch needs to know, passed explicitly. Defaults are the
//! embedded demo setup; a TOML file overrides them, and command-line flags
//! (or their environment variables) override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Holds the ledger, the switch's store and the demo profiles (with
    /// PostgreSQL: the profiles, and what is not shared yet).
    pub data_dir: PathBuf,
    /// Where the durable state lives: the data directory (the default), or
    /// PostgreSQL.
    pub store: StoreConfig,
    /// After a key's rotation, how long its previous secret is still
    /// accepted (while the caller installs the new profile); 0: refused at
    /// once.
    pub key_rotation_grace_ms: u64,
    /// The master key callers' secrets are sealed with (`secrets.rs`).
    /// Unset: `master.key` in the data directory, written on first start.
    pub master_key_file: Option<PathBuf>,
    /// gRPC.
    pub listen: SocketAddr,
    /// TLS on the gRPC listener; without it the switch listens on
    /// loopback only, unless `insecure`.
    pub tls: TlsConfig,
    /// Prometheus metrics at `/metrics`.
    pub metrics_listen: SocketAddr,
    /// The operations console (`edge::console`); None: not served. The
    /// `switch` binary serves it on 127.0.0.1:8080 unless told otherwise
    /// (`--console-listen ADDR|off`).
    pub console_listen: Option<SocketAddr>,
    /// Mark the console's cookies `Secure`: it is reached over TLS (a
    /// terminating proxy in front of it).
    pub console_secure_cookies: bool,
    /// How long one bank call may take before its outcome counts as unknown.
    pub bank_timeout_ms: u64,
    /// Status inquiries after a timeout before the switch reverses.
    pub bank_status_attempts: u32,
    /// The circuit breaker in front of every bank and biller.
    pub breaker: BreakerConfig,
    /// How far a request's timestamp may be from the switch's clock.
    pub signature_skew_ms: u64,
    /// Requests each caller's key may make: one terminal or bank cannot
    /// starve the others.
    pub rate_limit: RateLimitConfig,
    pub cash_in: Product,
    pub cash_out: Product,
    /// A merchant's VietQR: the fee is the merchant's (kept by its bank for
    /// the switch).
    pub qr: Product,
    /// Bills at a counter: the fee is the customer's, shared with the post
    /// office.
    pub bill: Product,
    /// Prepaid airtime at a counter: no fee by default (the networks sell
    /// at face value); amounts are further held to each network's
    /// denominations (`crate::topup`).
    pub topup: Product,
    /// How long a dynamic QR code (a merchant's order, bills shown as QR)
    /// can be paid by default.
    pub qr_ttl_ms: u64,
    /// How long a teller has to pay out and confirm a cash-out.
    pub cash_out_confirm_timeout_ms: u64,
    /// How long a ledger reservation outlives its transaction's own
    /// deadlines: time for a restarted switch to find the record and finish
    /// it before the ledger releases the reservation by itself (which it
    /// does for a reservation whose record a crash lost).
    pub reservation_grace_ms: u64,
    /// Wrong withdrawal codes an account may try in a day.
    pub code_attempts_max: u64,
    /// What one terminal may move in a day, over all products (the
    /// switch's own limit, beside the agent limits below).
    pub terminal_daily_max: u64,
    /// A customer account's cash deposits and withdrawals together, at
    /// every agent point, in a day (Circular 07/2024/TT-NHNN, Article 5:
    /// 20,000,000 VND). See `flows::limits`.
    pub customer_daily_max: u64,
    /// The same in a civil month (the circular sets none: unlimited).
    pub customer_monthly_max: u64,
    /// A post office's (an agent point's) cash deposits and withdrawals in
    /// a day (the circular: 200,000,000 VND).
    pub post_office_daily_max: u64,
    /// The same in a civil month (the circular: 5,000,000,000 VND).
    pub post_office_monthly_max: u64,
    /// The banks the switch routes to. Without `remote`, a bank is
    /// simulated in-process.
    pub banks: Vec<BankConfig>,
    /// Billers reached over gRPC, or defined beyond the demo's four. A demo
    /// biller (EVN, NUOCVP, VNPT, VIETTEL) without an entry, or without
    /// `remote`, is simulated in-process.
    pub billers: Vec<BillerConfig>,
    /// On PostgreSQL, a merchant's payment stream hears of payments stored
    /// through other nodes at once (LISTEN/NOTIFY); it also reads the store
    /// again this often, in case a notification was lost with its
    /// connection.
    pub watch_rescan_ms: u64,
    /// The in-process bank simulator.
    pub sim: SimConfig,
    /// The in-process biller simulator (the four demo billers).
    pub biller_sim: SimConfig,
    /// When settlement windows close by themselves.
    pub settlement: SettlementConfig,
    /// The demo network's first e-float per post office (load tests raise it).
    pub demo_efloat: u64,
    /// A post office whose e-float falls below this shows `low_float` (and
    /// the metric `switch_post_office_low_float`).
    pub low_float_threshold: u64,
    /// What counters may take while they cannot reach the switch
    /// (`[offline]`), sent to each counter signed.
    pub offline: OfflineConfig,
}

/// Store-and-forward at the counters (issue #29): what may wait and the
/// caps on it. The defaults follow the card networks' published practice
/// (Stripe, Square, Moneris): small caps, a day's maximum age; top-ups
/// and cash bill payments may wait, a cash-in only once the partner bank
/// agrees; cash-outs, cards and QR never.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    pub top_up: bool,
    pub bills: bool,
    pub cash_in: bool,
    /// Whole đồng: one request.
    pub one_max: u64,
    /// Whole đồng: everything one terminal holds queued.
    pub total_max: u64,
    pub count_max: u32,
    /// A request forwarded later than this after it was taken is refused
    /// (`offline_too_old`).
    pub max_age_ms: i64,
    /// A bill may be paid offline only if the counter inquired it within
    /// this.
    pub bill_inquiry_max_age_ms: i64,
    /// A cash-in may wait only for an account whose holder the counter
    /// showed within this.
    pub name_inquiry_max_age_ms: i64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            top_up: true,
            bills: true,
            cash_in: false,
            one_max: 2_000_000,
            total_max: 10_000_000,
            count_max: 50,
            max_age_ms: 24 * 3_600_000,
            bill_inquiry_max_age_ms: 12 * 3_600_000,
            name_inquiry_max_age_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// How a circuit breaker judges a bank or biller ([`crate::adapters::breaker`]). Defaults (ARCHITECTURE.md says why):
/// the last 100 calls within 30 s, at least 20 of them, half failed; open
/// for 2 s; 5 trial calls.
/// A token bucket per key id (`[rate_limit]`): `requests_per_s` on
/// average, `burst` at once. The default, 200 a second with bursts of 400,
/// is far above what a counter terminal or a merchant does and leaves a
/// bank's backend a fair share of this machine's few thousand flows a
/// second; 0 turns the limit off (the load generator's embedded switch).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_s: u64,
    pub burst: u64,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            requests_per_s: 200,
            burst: 400,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// How many of the latest calls the failure share is taken over.
    pub window_calls: u32,
    /// Outcomes older than this leave the window (a burst of failures an
    /// hour ago says nothing about the bank now).
    pub window_ms: u64,
    /// The window must hold at least this many outcomes before it can open
    /// the circuit (a few unlucky calls prove nothing).
    pub calls_min: u32,
    /// The failure share, in percent, at or above which it opens.
    pub failure_percent: u32,
    /// How long an open circuit refuses calls before trial calls.
    pub open_ms: u64,
    /// Trial calls let through when half-open.
    pub half_open_calls: u32,
    /// Does a call whose answer did not come in time count as failed?
    pub count_timeouts: bool,
    /// Does a refusal (the party answered "no") count as failed?
    pub count_rejections: bool,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            window_calls: 100,
            window_ms: 30_000,
            calls_min: 20,
            failure_percent: 50,
            open_ms: 2_000,
            half_open_calls: 5,
            count_timeouts: true,
            count_rejections: false,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://…` or a libpq key-value string (`host=a,b port=…
    /// dbname=switch target_session_attrs=read-write` follows a promoted
    /// standby): the ledger and the switch's records in PostgreSQL, shared
    /// by every node. Unset: the embedded engine in the data directory.
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The listener's certificate chain (PEM); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Callers must present a certificate issued by this CA (PEM), as well
    /// as sign their requests.
    pub client_ca_file: Option<PathBuf>,
    /// Listen in clear on an address other than loopback (behind a
    /// terminating proxy, say). Off: the switch refuses to.
    pub insecure: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementConfig {
    /// Close the open window every this many milliseconds (testing).
    pub interval_ms: Option<u64>,
    /// Or every day at this local time (UTC+7), `HH:MM`, e.g. `"23:00"`.
    pub daily_cutoff: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// NAPAS BIN, six digits.
    pub bin: String,
    /// Address of the bank's `BankAdapter` service, e.g.
    /// `https://10.0.0.5:6000`. Clear text (`http://`) only on loopback,
    /// unless `insecure`.
    #[serde(default)]
    pub remote: Option<String>,
    /// The CA (PEM) that signed the bank's server certificate (`https://`).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The switch's client certificate (PEM) for this bank, and its key:
    /// the bank pins the switch by it.
    #[serde(default)]
    pub tls_client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_client_key_file: Option<PathBuf>,
    /// Call a bank beyond loopback in clear (through a tunnel that
    /// encrypts, say). Off: the switch refuses to start.
    #[serde(default)]
    pub insecure: bool,
    /// The zone PIN key shared with the bank (a file of 32 hex digits):
    /// card PINs reach it enciphered under this. A remote bank without one
    /// takes no cards; a simulated one gets a key derived from the master
    /// key.
    #[serde(default)]
    pub pin_key_file: Option<PathBuf>,
}

/// One `[[billers]]` entry. For a demo biller every field but `code` and
/// `remote` (and its TLS) defaults to the demo's; any other biller must be
/// named in full and reached over gRPC.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillerConfig {
    /// Short code, 1 to 16 letters or digits (`EVN`).
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Its number in ledger account ids; unique among billers.
    #[serde(default)]
    pub number: Option<u64>,
    /// May a customer pay some due bills and leave others?
    #[serde(default)]
    pub partial_allowed: Option<bool>,
    /// Where a QR code shown for its bills says the money goes.
    #[serde(default)]
    pub collection_bin: Option<String>,
    #[serde(default)]
    pub collection_account: Option<String>,
    /// Address of the biller's `BillerAdapter` service. Clear text
    /// (`http://`) only on loopback, unless `insecure`.
    #[serde(default)]
    pub remote: Option<String>,
    /// What the pilot report counts its bills as: `electricity`, `water`,
    /// `internet`, `telecom_tv` or `other` (the default outside the demo).
    #[serde(default)]
    pub category: Option<String>,
    /// The CA (PEM) that signed the biller's server certificate.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The switch's client certificate (PEM) for this biller, and its key.
    #[serde(default)]
    pub tls_client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("data"),
            master_key_file: None,
            tls: TlsConfig::default(),
            key_rotation_grace_ms: 10 * 60 * 1000,
            store: StoreConfig::default(),
            listen: "127.0.0.1:50051".parse().expect("literal address"),
            metrics_listen: "127.0.0.1:9100".parse().expect("literal address"),
            console_listen: None,
            console_secure_cookies: false,
            bank_timeout_ms: 3_000,
            bank_status_attempts: 3,
            breaker: BreakerConfig::default(),
            rate_limit: RateLimitConfig::default(),
            signature_skew_ms: 300_000,
            cash_in: Product {
                amount_min: 10_000,
                amount_max: 50_000_000,
                fee: FeeRule {
                    flat: 0,
                    percent: Decimal::new(5, 1), // 0.5 %
                    min: 3_000,
                    max: 30_000,
                    commission_percent: Decimal::from(60),
                },
            },
            cash_out: Product {
                amount_min: 50_000,
                amount_max: 20_000_000,
                fee: FeeRule {
                    flat: 2_000,
                    percent: Decimal::new(2, 1), // 0.2 %
                    min: 5_000,
                    max: 50_000,
                    commission_percent: Decimal::from(70),
                },
            },
            qr: Product {
                amount_min: 1_000,
                amount_max: 100_000_000,
                fee: FeeRule {
                    flat: 0,
                    percent: Decimal::new(6, 1), // 0.6 %
                    min: 0,
                    max: 500_000,
                    commission_percent: Decimal::ZERO,
                },
            },
            bill: Product {
                amount_min: 1_000,
                amount_max: 200_000_000,
                fee: FeeRule {
                    flat: 2_000,
                    percent: Decimal::ZERO,
                    min: 2_000,
                    max: 2_000,
                    commission_percent: Decimal::from(50),
                },
            },
            topup: Product {
                amount_min: 10_000,
                amount_max: 500_000,
                fee: FeeRule {
                    flat: 0,
                    percent: Decimal::ZERO,
                    min: 0,
                    max: 0,
                    commission_percent: Decimal::ZERO,
                },
            },
            qr_ttl_ms: 15 * 60 * 1000,
            cash_out_confirm_timeout_ms: 10 * 60 * 1000,
            reservation_grace_ms: 120_000,
            code_attempts_max: 3,
            terminal_daily_max: 2_000_000_000,
            customer_daily_max: 20_000_000,
            customer_monthly_max: u64::MAX,
            post_office_daily_max: 200_000_000,
            post_office_monthly_max: 5_000_000_000,
            watch_rescan_ms: 5_000,
            banks: crate::demo::DEMO_BANKS
                .iter()
                .map(|bin| BankConfig {
                    bin: bin.to_string(),
                    ..BankConfig::default()
                })
                .collect(),
            billers: Vec::new(),
            sim: SimConfig::default(),
            biller_sim: SimConfig::default(),
            settlement: SettlementConfig {
                interval_ms: None,
                daily_cutoff: Some("23:00".to_string()),
            },
            low_float_threshold: 50_000_000,
            offline: OfflineConfig::default(),
            demo_efloat: crate::demo::EFLOAT_VND,
        }
    }
}

impl Config {
    /// Where the master key is read from (and written, the first time).
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// Limits and fee of one kind of transaction.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub amount_min: u64,
    pub amount_max: u64,
    pub fee: FeeRule,
}

/// Flat + percentage, clamped to [min, max]; the post office's commission
/// is a percentage of the fee, rounded down, the rest goes to the switch.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRule {
    pub flat: u64,
    /// Percent of the amount, written as a string in TOML (`"0.5"`), so
    /// that it never passes through a float.
    pub percent: Decimal,

    pub min: u64,
    pub max: u64,
    pub commission_percent: Decimal,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Added to every simulated bank call.
    pub latency_ms: u64,
    /// Share of calls that fail as unavailable before doing anything.
    pub error_rate: f64,
    /// Share of calls that do their work and then never answer (the switch
    /// times out and must find the outcome).
    pub lost_response_rate: f64,
    pub seed: u64,
    /// Billers only: customers per demo biller (the first has nothing due).
    pub customers: usize,
    /// Billers only: a paid-up customer gets next month's bill at once, so
    /// that a load test never runs out of bills.
    pub recurring_bills: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            latency_ms: 0,
            error_rate: 0.0,
            lost_response_rate: 0.0,
            seed: 7,
            customers: 6,
            recurring_bills: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_some_fields_and_unknown_keys_are_refused() {
        let c = Config::from_toml("listen = \"127.0.0.1:6000\"\n[sim]\nlatency_ms = 50\n").unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.sim.latency_ms, 50);
        assert_eq!(c.bank_timeout_ms, 3_000);
        assert!(
            Config::from_toml("listn = \"x\"")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
