//! Merchant commands (`qr create`, `payments watch | list`), the payer
//! bank's `pay-qr`, and the teller's `bill inquire | pay`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use proto::v1 as pb;
use serde_json::{Value, json};

use crate::client::{Failure, Profile, retryable};
use crate::teller::{new_request_id, render};

#[derive(Subcommand)]
pub enum PaymentsCommand {
    /// Print completed payments as they happen (one JSON line each with
    /// --json); resumes after --after-seq.
    Watch {
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
        /// Stop after this many payments (default: watch until stopped).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Completed payments, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
}

#[derive(Subcommand)]
pub enum BillCommand {
    /// The customer's name and unpaid bills.
    Inquire {
        #[arg(long)]
        biller: String,
        #[arg(long)]
        customer: String,
    },
    /// Pay bills (every due bill unless --bills names some).
    Pay {
        #[arg(long)]
        biller: String,
        #[arg(long)]
        customer: String,
        /// Comma-separated bill ids.
        #[arg(long, value_delimiter = ',')]
        bills: Vec<String>,
        #[arg(long, value_enum)]
        funding: FundingArg,
        /// For --funding account.
        #[arg(long)]
        bank: Option<String>,
        #[arg(long)]
        account: Option<String>,
        /// For --funding card: the card number; the PIN is read from
        /// POS_PIN or, without it, from the first line of standard input
        /// (never from the command line, which others can see).
        #[arg(long)]
        card: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
}

/// Prepaid airtime at the counter (a teller's profile).
#[derive(clap::Args)]
pub struct TopUpArgs {
    /// VIETTEL, VINAPHONE or MOBIFONE.
    #[arg(long)]
    provider: String,
    /// 0xxxxxxxxx or +84xxxxxxxxx.
    #[arg(long)]
    phone: String,
    /// One of the network's denominations (10000 … 500000 VND).
    #[arg(long, allow_hyphen_values = true)]
    amount: crate::amount::Amount,
    #[arg(long, value_enum, default_value = "cash")]
    funding: FundingArg,
    /// For --funding account.
    #[arg(long)]
    bank: Option<String>,
    #[arg(long)]
    account: Option<String>,
    /// For --funding card (the PIN as for `bill pay`).
    #[arg(long)]
    card: Option<String>,
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FundingArg {
    Cash,
    Account,
    Qr,
    Card,
}

/// What `pos-agent` asked of a merchant, bank or teller profile.
pub enum Command {
    CreateQr {
        amount: crate::amount::Amount,
        reference: String,
        purpose: Option<String>,
        expires_in_s: u32,
        request_id: Option<String>,
    },
    Payments(PaymentsCommand),
    PayQr {
        payer_account: String,
        payload: String,
        amount: crate::amount::Amount,
        request_id: Option<String>,
    },
    Bill(BillCommand),
    TopUp(TopUpArgs),
}

fn wire_funding(f: FundingArg) -> i32 {
    let f = match f {
        FundingArg::Cash => pb::Funding::Cash,
        FundingArg::Account => pb::Funding::Account,
        FundingArg::Qr => pb::Funding::Qr,
        FundingArg::Card => pb::Funding::Card,
    };
    f as i32
}

/// The card number and PIN block a request carries: the PIN from POS_PIN
/// or standard input, enciphered at once under the terminal's PIN key.
fn card_fields(
    credentials: &proto::auth::Credentials,
    card: Option<String>,
) -> Result<(String, String), Failure> {
    let Some(card) = card else {
        return Ok((String::new(), String::new()));
    };
    let pin = match std::env::var("POS_PIN") {
        Ok(pin) => pin,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::from(format!("reading the PIN: {e}")))?;
            line.trim().to_string()
        }
    };
    credentials.card(&card, &pin).map_err(Failure::from)
}

fn need_role(profile: &Profile, role: &str, what: &str) -> Result<(), Failure> {
    if profile.role == role {
        return Ok(());
    }
    Err(Failure::from(format!(
        "this is a {} profile; {what} needs a {role}'s",
        profile.role
    )))
}

/// Retries re-sign (fresh timestamp and nonce) and keep the request id.
macro_rules! call {
    ($client:expr, $credentials:expr, $method:ident, $path:literal, $msg:expr) => {{
        let mut attempt = 0;
        loop {
            match $client
                .$method($credentials.sign($path, $msg.clone()))
                .await
            {
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

fn notice_json(n: &pb::PaymentNotice) -> Value {
    json!({
        "seq": n.seq,
        "transaction_id": n.transaction_id,
        "qr_id": n.qr_id,
        "order_reference": n.order_reference,
        "amount": n.amount,
        "fee": n.fee,
        "net_amount": n.net_amount,
        "payer_bank_bin": n.payer_bank_bin,
        "payer_bank_name": n.payer_bank_name,
        "paid_at_ms": n.paid_at_ms,
    })
}

fn notice_text(n: &pb::PaymentNotice) -> String {
    format!(
        "#{} {} {} VND (net {}) from {} order {}\n",
        n.seq,
        n.transaction_id,
        n.amount,
        n.net_amount,
        n.payer_bank_name,
        if n.order_reference.is_empty() {
            "-"
        } else {
            &n.order_reference
        }
    )
}

pub async fn run(profile: &Path, command: Command, json: bool) -> Result<String, Failure> {
    let profile = Profile::load(profile)?;
    let credentials = profile.credentials()?;
    let channel = profile.connect().await?;
    match command {
        Command::CreateQr {
            amount,
            reference,
            purpose,
            expires_in_s,
            request_id,
        } => {
            need_role(&profile, "merchant", "qr create")?;
            let mut client = pb::merchant_client::MerchantClient::new(channel);
            let msg = pb::CreateQrRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                amount: amount.dong()?,
                reference,
                purpose: purpose.unwrap_or_default(),
                expires_in_s,
            };
            let q = call!(
                client,
                credentials,
                create_qr,
                "/paymentswitch.v1.Merchant/CreateQr",
                msg
            )?;
            if json {
                return Ok(json!({
                    "qr_id": q.qr_id, "payload": q.payload, "amount": q.amount,
                    "reference": q.reference, "purpose": q.purpose, "expires_at_ms": q.expires_at_ms,
                })
                .to_string());
            }
            let code = qrcode::QrCode::new(q.payload.as_bytes())
                .map_err(|e| format!("cannot draw the code: {e}"))?;
            let drawing = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .build();
            Ok(format!(
                "{drawing}\nqr_id     {}\namount    {} VND\norder     {}\npayload   {}\n",
                q.qr_id, q.amount, q.reference, q.payload
            ))
        }
        Command::Payments(PaymentsCommand::Watch { after_seq, count }) => {
            need_role(&profile, "merchant", "payments watch")?;
            let mut client = pb::merchant_client::MerchantClient::new(channel);
            let mut after = after_seq;
            let mut seen = 0u64;
            // Reconnect after a broken stream, resuming after the last seen.
            loop {
                let msg = pb::WatchPaymentsRequest { after_seq: after };
                let mut stream = call!(
                    client,
                    credentials,
                    watch_payments,
                    "/paymentswitch.v1.Merchant/WatchPayments",
                    msg
                )?;
                loop {
                    match stream.message().await {
                        Ok(Some(n)) => {
                            after = n.seq;
                            let line = if json {
                                format!("{}\n", notice_json(&n))
                            } else {
                                notice_text(&n)
                            };
                            let mut out = std::io::stdout().lock();
                            out.write_all(line.as_bytes()).ok();
                            out.flush().ok();
                            seen += 1;
                            if count.is_some_and(|c| seen >= c) {
                                return Ok(String::new());
                            }
                        }
                        Ok(None) => break,
                        Err(s) if retryable(&s) => break,
                        Err(s) => return Err(Failure::from(s)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Command::Payments(PaymentsCommand::List {
            page_size,
            page_token,
        }) => {
            need_role(&profile, "merchant", "payments list")?;
            let mut client = pb::merchant_client::MerchantClient::new(channel);
            let msg = pb::ListPaymentsRequest {
                page_size,
                page_token,
            };
            let r = call!(
                client,
                credentials,
                list_payments,
                "/paymentswitch.v1.Merchant/ListPayments",
                msg
            )?;
            Ok(if json {
                json!({"payments": r.payments.iter().map(notice_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token}).to_string()
            } else {
                let mut out: String = r.payments.iter().map(notice_text).collect();
                if !r.next_page_token.is_empty() {
                    out.push_str(&format!("more: --page-token {}\n", r.next_page_token));
                }
                out
            })
        }
        Command::PayQr {
            payer_account,
            payload,
            amount,
            request_id,
        } => {
            need_role(&profile, "bank", "pay-qr")?;
            let mut client = pb::payer_bank_client::PayerBankClient::new(channel);
            let msg = pb::PayQrRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                payload,
                payer_account,
                amount: amount.dong()?,
            };
            let r = call!(
                client,
                credentials,
                pay_qr,
                "/paymentswitch.v1.PayerBank/PayQr",
                msg
            )?;
            Ok(render(&r, json))
        }
        Command::Bill(BillCommand::Inquire { biller, customer }) => {
            need_role(&profile, "teller", "bill inquire")?;
            let mut client = pb::bills_client::BillsClient::new(channel);
            let msg = pb::InquireBillsRequest { biller, customer };
            let r = call!(
                client,
                credentials,
                inquire_bills,
                "/paymentswitch.v1.Bills/InquireBills",
                msg
            )?;
            Ok(if json {
                json!({
                    "biller": r.biller, "biller_name": r.biller_name, "customer": r.customer,
                    "customer_name": r.customer_name, "nothing_due": r.nothing_due,
                    "partial_allowed": r.partial_allowed, "total": r.total, "fee": r.fee,
                    "bills": r.bills.iter().map(|b| json!({"bill_id": b.bill_id, "period": b.period, "amount": b.amount, "due_date": b.due_date})).collect::<Vec<_>>(),
                })
                .to_string()
            } else {
                let mut out = format!("{} {}\n{}\n", r.biller_name, r.customer, r.customer_name);
                if r.nothing_due {
                    out.push_str("nothing due\n");
                }
                for b in &r.bills {
                    out.push_str(&format!(
                        "  {}  {}  {:>10} VND  due {}\n",
                        b.bill_id, b.period, b.amount, b.due_date
                    ));
                }
                if !r.nothing_due {
                    out.push_str(&format!("total {} VND + fee {} VND\n", r.total, r.fee));
                }
                out
            })
        }
        Command::Bill(BillCommand::Pay {
            biller,
            customer,
            bills,
            funding,
            bank,
            account,
            card,
            request_id,
        }) => {
            need_role(&profile, "teller", "bill pay")?;
            let (card_number, pin_block) = card_fields(&credentials, card)?;
            let mut client = pb::bills_client::BillsClient::new(channel);
            let msg = pb::PayBillsRequest {
                client_request_id: request_id.unwrap_or_else(new_request_id),
                biller,
                customer,
                bill_ids: bills,
                funding: wire_funding(funding),
                bank_bin: bank.unwrap_or_default(),
                account: account.unwrap_or_default(),
                card_number,
                pin_block,
                teller: crate::client::teller(),
                offline_taken_at_ms: 0,
            };
            let r = call!(
                client,
                credentials,
                pay_bills,
                "/paymentswitch.v1.Bills/PayBills",
                msg
            )?;
            Ok(render(&r, json))
        }
        Command::TopUp(a) => {
            need_role(&profile, "teller", "topup")?;
            let (card_number, pin_block) = card_fields(&credentials, a.card)?;
            let mut client = pb::bills_client::BillsClient::new(channel);
            let msg = pb::TopUpRequest {
                client_request_id: a.request_id.unwrap_or_else(new_request_id),
                provider: a.provider,
                phone: a.phone,
                amount: a.amount.dong()?,
                funding: wire_funding(a.funding),
                bank_bin: a.bank.unwrap_or_default(),
                account: a.account.unwrap_or_default(),
                card_number,
                pin_block,
                teller: crate::client::teller(),
                offline_taken_at_ms: 0,
            };
            let r = call!(
                client,
                credentials,
                top_up,
                "/paymentswitch.v1.Bills/TopUp",
                msg
            )?;
            Ok(render(&r, json))
        }
    }
}
