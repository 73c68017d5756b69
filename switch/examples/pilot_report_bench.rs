//! The pilot report over a generated month of transactions (issue #28,
//! BENCHMARKS.md): a month of `--transactions` (1,000,000 by default)
//! finished transactions' aggregates are written as the finishing writes
//! would write them, then the month's report (and the quarter's) is read
//! `--runs` times and timed. It never reads the transactions themselves.
//!
//! `cargo run --release -p switch --example pilot_report_bench -- [--transactions 1000000] [--runs 5] [--postgres]`
//!
//! With `--postgres` the switch runs on a throw-away PostgreSQL cluster
//! (Debian's postgresql-15, as the tests use).

use std::time::Instant;

use switch::caller::{Principal, Role};
use switch::store::stats::{Place, contributions};
use switch::store::{BillPart, Funding, Kind, MerchantPart, Status, TxRecord};

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A cheap deterministic generator (xorshift), so that runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const POST_OFFICES: [(&str, &str); 6] = [
    ("tho-tang", "tho-tang"),
    ("tam-dao", "tam-dao"),
    ("huong-dao", "huong-dao"),
    ("lang-cong", "lang-cong"),
    ("vinh-yen", "lien-bao"),
    ("phuc-yen", "hung-vuong"),
];
const MERCHANTS: [(&str, &str); 3] = [
    ("tap-hoa-tho-tang", "tho-tang"),
    ("cafe-tam-dao", "tam-dao"),
    ("nha-thuoc-huong-dao", "huong-dao"),
];
const BANKS: [&str; 6] = ["970422", "970436", "970415", "970418", "970405", "970407"];
const CATEGORIES: [&str; 4] = ["electricity", "water", "internet", "telecom_tv"];

/// The `n`th generated transaction of November 2026 (Vietnam time).
fn generated(rng: &mut Rng, template: &TxRecord, month_start_ms: i64) -> (TxRecord, Place) {
    let mut t = template.clone();
    t.created_at_ms = month_start_ms + rng.below(30 * 86_400_000) as i64;
    t.status = match rng.below(100) {
        0..=1 => Status::Failed,
        2 => Status::Reversed,
        _ => Status::Completed,
    };
    t.amount = 10_000 + rng.below(5_000) * 1_000;
    t.bank_bin = BANKS[rng.below(6) as usize].into();
    t.account = format!("{:010}", rng.below(50_000));
    t.card_token = None;
    t.bill = None;
    t.merchant = None;
    let (po, mut commune) = POST_OFFICES[rng.below(6) as usize];
    t.post_office_id = po.into();
    t.terminal_id = format!("{po}-{}", 1 + rng.below(2));
    let mut category = None;
    t.kind = match rng.below(10) {
        0..=2 => Kind::CashIn,
        3..=4 => Kind::CashOut,
        5..=6 => {
            category = Some(CATEGORIES[rng.below(4) as usize]);
            Kind::BillPayment
        }
        7 => Kind::TopUp,
        _ => {
            let (m, c) = MERCHANTS[rng.below(3) as usize];
            commune = c;
            t.merchant = Some(MerchantPart {
                merchant_id: m.into(),
                qr_id: "q".into(),
                order_reference: None,
                purpose: None,
            });
            Kind::QrPayment
        }
    };
    if matches!(t.kind, Kind::BillPayment | Kind::TopUp) {
        let funding =
            [Funding::Cash, Funding::Account, Funding::Qr, Funding::Card][rng.below(4) as usize];
        if funding == Funding::Card {
            t.card_token = Some(format!("{:016x}", rng.below(20_000)));
        }
        t.bill = Some(BillPart {
            biller: "EVN".into(),
            customer: "PD01".into(),
            customer_name: String::new(),
            bills: Vec::new(),
            funding,
        });
    }
    (
        t,
        Place {
            commune: commune.into(),
            bill_category: category,
            public_fees: false,
        },
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let transactions = flag(&args, "--transactions", 1_000_000);
    let runs = flag(&args, "--runs", 5);
    let postgres = args.iter().any(|a| a == "--postgres");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = postgres.then(pgtest::Cluster::start);
    runtime.block_on(async {
        let mut config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            console_listen: None,
            ..switch::Config::default()
        };
        config.store.url = cluster.as_ref().map(|c| c.url("switch"));
        let opened = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        let switch = opened.switch;
        // November 2026 in Vietnam.
        let month = switch::civil::month_number(1_795_539_600_000);
        let month_start = switch::civil::day_start_ms(switch::civil::month_first_day(month));
        let template = {
            let id = switch::ids::TxId::from_u128(1u128 << 100).unwrap();
            let mut t: TxRecord = serde_json::from_value(serde_json::json!({
                "id": id.to_string(), "kind": "CashIn", "status": "Completed", "stage": "Done",
                "terminal_id": "", "post_office_id": "", "bank_bin": "", "account": "",
                "account_name": "", "amount": 0,
                "fee": {"total": 0, "commission": 0, "switch": 0},
                "client_request_id": "b", "fingerprint": "f", "created_at_ms": 0,
                "updated_at_ms": 0, "error_code": null, "error_message": null,
                "bank_reference": null
            }))
            .unwrap();
            t.steps.clear();
            t
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        let mut batch = Vec::new();
        for n in 0..transactions {
            let (t, place) = generated(&mut rng, &template, month_start);
            batch.extend(contributions(&t, &place));
            if n % 2_000 == 1_999 {
                switch.store.add_stats(&batch).unwrap();
                batch.clear();
            }
        }
        switch.store.add_stats(&batch).unwrap();
        switch.store.durable().await.unwrap();
        let keys = switch.store.stats_all().unwrap().len();
        println!(
            "generated {transactions} transactions' aggregates ({keys} keys) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let operator = Principal {
            id: "operator".into(),
            role: Role::Operator,
        };
        for period in ["2026-11", "2026-Q4"] {
            let mut times = Vec::new();
            let mut counted = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let r = switch.pilot_report(&operator, period, "").await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1_000.0);
                counted = r.units[0].total().now.count
                    + r.units[0].products.values().map(|p| p.now.failed + p.now.reversed).sum::<u64>();
            }
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "report {period}: {} units, {counted} transactions counted; ms per report: min {:.1}, median {:.1}, max {:.1} ({} runs)",
                switch.pilot_report(&operator, period, "").await.unwrap().units.len(),
                times[0],
                times[times.len() / 2],
                times[times.len() - 1],
                runs
            );
        }
    });
}
