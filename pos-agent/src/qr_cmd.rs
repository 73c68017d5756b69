//! `pos-agent qr decode | encode | show`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use qrcode::QrCode;

#[derive(Subcommand)]
pub enum QrCommand {
    /// Check a payload and print its fields; exits 0 only for a valid VietQR.
    /// With --json: one object with bin, account, service_code, amount,
    /// currency, country, initiation, purpose, bill_number.
    Decode { payload: String },
    /// Generate a VietQR payload (static without --amount, dynamic with it).
    Encode {
        #[arg(long)]
        bin: String,
        #[arg(long)]
        account: String,
        /// In đồng.
        #[arg(long)]
        amount: Option<u64>,
        /// 62/08, printable ASCII (Vietnamese without diacritics), at most 25.
        #[arg(long)]
        purpose: Option<String>,
        /// 62/01.
        #[arg(long)]
        bill_number: Option<String>,
        #[arg(long, value_enum, default_value = "QRIBFTTA")]
        service: ServiceArg,
        #[arg(long)]
        merchant_name: Option<String>,
        #[arg(long)]
        merchant_city: Option<String>,
    },
    /// A merchant's dynamic code for one order, issued by the switch (needs a
    /// merchant's --profile): prints `qr_id` and `payload` with --json, and
    /// draws the code otherwise.
    Create {
        /// Whole đồng.
        #[arg(long, allow_hyphen_values = true)]
        amount: crate::amount::Amount,
        /// The order reference (62/01).
        #[arg(long)]
        reference: String,
        /// 62/08.
        #[arg(long)]
        purpose: Option<String>,
        /// 0: the switch's default (15 minutes).
        #[arg(long, default_value_t = 0)]
        expires_in_s: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Draw a VietQR in the terminal, or write it as a PNG image.
    Show {
        payload: String,
        #[arg(long)]
        png: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ServiceArg {
    Qribftta,
    Qribfttc,
    Qrpush,
}

pub fn run(command: QrCommand, json: bool) -> Result<(), String> {
    match command {
        QrCommand::Decode { payload } => decode(&payload, json),
        QrCommand::Encode {
            bin,
            account,
            amount,
            purpose,
            bill_number,
            service,
            merchant_name,
            merchant_city,
        } => {
            let spec = qr::Spec {
                service: Some(match service {
                    ServiceArg::Qribftta => qr::Service::Account,
                    ServiceArg::Qribfttc => qr::Service::Card,
                    ServiceArg::Qrpush => qr::Service::Push,
                }),
                amount,
                purpose: purpose.as_deref(),
                bill_number: bill_number.as_deref(),
                merchant_name: merchant_name.as_deref(),
                merchant_city: merchant_city.as_deref(),
                ..qr::Spec::new(&bin, &account)
            };
            let payload = qr::encode(&spec).map_err(|e| e.to_string())?;
            let _ = writeln!(std::io::stdout(), "{payload}");
            Ok(())
        }
        QrCommand::Show { payload, png } => show(&payload, png),
        QrCommand::Create { .. } => unreachable!("main sends create to the switch"),
    }
}

fn decode(payload: &str, json: bool) -> Result<(), String> {
    let q = qr::decode(payload).map_err(|e| e.to_string())?;
    if json {
        let object: serde_json::Map<String, serde_json::Value> = q
            .summary()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map_or(serde_json::Value::Null, |s| s.into()),
                )
            })
            .collect();
        let _ = writeln!(std::io::stdout(), "{}", serde_json::Value::Object(object));
    } else {
        let _ = write!(std::io::stdout(), "{}", describe(&q));
    }
    Ok(())
}

/// A readable summary of a VietQR, as a teller would check it.
pub fn describe(q: &qr::VietQr) -> String {
    let bank = qr::bank_by_bin(q.bin).map_or("unknown bank", |b| b.short_name);
    let mut out = format!("bank      {} ({bank})\naccount   {}\n", q.bin, q.account);
    let line = |out: &mut String, label: &str, v: Option<&str>| {
        if let Some(v) = v {
            out.push_str(&format!("{label:<10}{v}\n"));
        }
    };
    line(&mut out, "service", q.service.map(qr::Service::as_str));
    line(
        &mut out,
        "amount",
        q.amount.map(|a| format!("{a} VND")).as_deref(),
    );
    line(&mut out, "code", q.initiation.map(qr::Initiation::as_str));
    line(&mut out, "merchant", q.merchant_name);
    line(&mut out, "city", q.merchant_city);
    line(&mut out, "bill", q.bill_number);
    line(&mut out, "purpose", q.purpose);
    out
}

fn show(payload: &str, png_path: Option<PathBuf>) -> Result<(), String> {
    // Never display a code that would send money somewhere unexpected.
    let q = qr::decode(payload).map_err(|e| format!("refusing to show an invalid VietQR: {e}"))?;
    let code = QrCode::new(payload.as_bytes()).map_err(|e| format!("cannot draw the code: {e}"))?;
    match png_path {
        Some(path) => {
            write_png(&code, &path)?;
            let _ = writeln!(std::io::stdout(), "wrote {}", path.display());
        }
        None => {
            let drawing = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .build();
            let _ = writeln!(std::io::stdout(), "{drawing}");
            let _ = write!(std::io::stdout(), "{}", describe(&q));
        }
    }
    Ok(())
}

/// Write the code as an 8-bit greyscale PNG: 8 pixels per module and the
/// four-module quiet zone the QR standard asks for.
fn write_png(code: &QrCode, path: &std::path::Path) -> Result<(), String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors[y * modules + x] == qrcode::Color::Dark {
                for dy in 0..SCALE {
                    let row = ((y + QUIET) * SCALE + dy) * side;
                    let start = row + (x + QUIET) * SCALE;
                    pixels[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writer
        .finish()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::stdout().flush().ok();
    Ok(())
}
