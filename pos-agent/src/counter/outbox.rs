//! The counter's outbox (issue #29): what the counter took while it could
//! not reach the switch, kept in SQLite (WAL, synchronous=FULL) until it
//! is forwarded, with the offline policy the switch last sent and what
//! the counter last saw of names and bills (the offline checks need them).
//!
//! An item is committed, with its provisional voucher's number, before the
//! voucher prints; it carries the request id the switch deduplicates on,
//! so a forward interrupted anywhere (a `kill -9` of the agent included)
//! and sent again completes once.

use std::path::Path;
use std::sync::Mutex;

use prost::Message;
use proto::v1 as pb;
use rusqlite::{Connection, OptionalExtension, params};

/// Why an item cannot wait: a sentence for the teller (`text.rs` words
/// it), keyed by a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapRefusal {
    OneMax(u64),
    TotalMax {
        max: u64,
        queued: u64,
    },
    CountMax(u32),
    /// What the counter last knew of its limits leaves less than this.
    Limit {
        left: u64,
    },
}

/// What the outbox holds for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub seq: i64,
    pub voucher: String,
    pub request_id: String,
    /// `top_up`, `bills` or `cash_in`.
    pub kind: String,
    /// The request as it will be sent (with `offline_taken_at_ms`).
    pub request: Vec<u8>,
    /// Collected from the customer: amount and fee, whole đồng.
    pub amount: u64,
    pub fee: u64,
    /// What it was for ("VIETTEL · 0961234567").
    pub label: String,
    pub teller: String,
    pub taken_at_ms: i64,
    /// `queued`, `done` or `refused`.
    pub state: String,
    pub transaction_id: String,
    pub error_code: String,
    pub error_message: String,
    pub receipt_printed: bool,
    pub refund_returned_at_ms: Option<i64>,
}

pub struct Outbox {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS item (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  voucher TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  request BLOB NOT NULL,
  amount INTEGER NOT NULL,
  fee INTEGER NOT NULL,
  label TEXT NOT NULL,
  teller TEXT NOT NULL,
  taken_at_ms INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'queued',
  transaction_id TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  error_message TEXT NOT NULL DEFAULT '',
  answered_at_ms INTEGER,
  receipt_printed INTEGER NOT NULL DEFAULT 0,
  refund_returned_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS policy (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  body BLOB NOT NULL,
  received_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_name (
  bank TEXT NOT NULL, account TEXT NOT NULL, name TEXT NOT NULL, seen_at_ms INTEGER NOT NULL,
  PRIMARY KEY (bank, account)
);
CREATE TABLE IF NOT EXISTS seen_bills (
  biller TEXT NOT NULL, customer TEXT NOT NULL, body BLOB NOT NULL, seen_at_ms INTEGER NOT NULL,
  PRIMARY KEY (biller, customer)
);
CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kept (name TEXT PRIMARY KEY, body BLOB NOT NULL);
";

fn sql(e: rusqlite::Error) -> String {
    format!("the counter's outbox: {e}")
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `flat + amount × bp / 10000` rounded half up, clamped: the switch's fee
/// rule as the policy states it.
pub fn fee(f: &pb::OfflineFee, amount: u64) -> u64 {
    let variable = (u128::from(amount) * u128::from(f.percent_bp) + 5_000) / 10_000;
    let raw = u128::from(f.flat) + variable;
    u64::try_from(raw)
        .unwrap_or(u64::MAX)
        .clamp(f.min, f.max.max(f.min))
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Outbox, String> {
        let conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Outbox {
            conn: Mutex::new(conn),
        })
    }

    pub fn put_policy(&self, p: &pb::OfflinePolicy, now_ms: i64) -> Result<(), String> {
        lock(&self.conn)
            .execute(
                "INSERT INTO policy (id, body, received_at_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, received_at_ms = excluded.received_at_ms",
                params![p.encode_to_vec(), now_ms],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// The policy last received, as stored; one that does not decode is
    /// an error, never "no policy".
    pub fn policy(&self) -> Result<Option<pb::OfflinePolicy>, String> {
        let body: Option<Vec<u8>> = lock(&self.conn)
            .query_row("SELECT body FROM policy WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        body.map(|b| {
            pb::OfflinePolicy::decode(b.as_slice())
                .map_err(|e| format!("the stored offline policy does not decode: {e}"))
        })
        .transpose()
    }

    /// The billers the switch last listed, for the bills screen offline.
    pub fn keep_billers(&self, billers: &[pb::BillerInfo]) -> Result<(), String> {
        let body = pb::ListBillersResponse {
            billers: billers.to_vec(),
        }
        .encode_to_vec();
        lock(&self.conn)
            .execute(
                "INSERT INTO kept VALUES ('billers', ?1) ON CONFLICT (name) DO UPDATE SET body = excluded.body",
                params![body],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn billers(&self) -> Result<Vec<pb::BillerInfo>, String> {
        let body: Option<Vec<u8>> = lock(&self.conn)
            .query_row("SELECT body FROM kept WHERE name = 'billers'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        match body {
            None => Ok(Vec::new()),
            Some(b) => pb::ListBillersResponse::decode(b.as_slice())
                .map(|r| r.billers)
                .map_err(|e| format!("the kept billers do not decode: {e}")),
        }
    }

    pub fn saw_name(
        &self,
        bank: &str,
        account: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(), String> {
        lock(&self.conn)
            .execute(
                "INSERT INTO seen_name VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (bank, account) DO UPDATE SET name = excluded.name, seen_at_ms = excluded.seen_at_ms",
                params![bank, account, name, now_ms],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// The holder's name this counter saw for the account since `since_ms`.
    pub fn seen_name(
        &self,
        bank: &str,
        account: &str,
        since_ms: i64,
    ) -> Result<Option<String>, String> {
        lock(&self.conn)
            .query_row(
                "SELECT name FROM seen_name WHERE bank = ?1 AND account = ?2 AND seen_at_ms >= ?3",
                params![bank, account, since_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    pub fn saw_bills(&self, r: &pb::InquireBillsResponse, now_ms: i64) -> Result<(), String> {
        lock(&self.conn)
            .execute(
                "INSERT INTO seen_bills VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (biller, customer) DO UPDATE SET body = excluded.body, seen_at_ms = excluded.seen_at_ms",
                params![r.biller, r.customer, r.encode_to_vec(), now_ms],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// The bills this counter last inquired for the customer, if since
    /// `since_ms`.
    pub fn seen_bills(
        &self,
        biller: &str,
        customer: &str,
        since_ms: i64,
    ) -> Result<Option<pb::InquireBillsResponse>, String> {
        let body: Option<Vec<u8>> = lock(&self.conn)
            .query_row(
                "SELECT body FROM seen_bills WHERE biller = ?1 AND customer = ?2 AND seen_at_ms >= ?3",
                params![biller, customer, since_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        body.map(|b| {
            pb::InquireBillsResponse::decode(b.as_slice())
                .map_err(|e| format!("stored bills do not decode: {e}"))
        })
        .transpose()
    }

    /// Queue `item` within `policy`'s caps and `limit_left` (what the
    /// counter last knew was left of its limits), giving it the next
    /// voucher number, in one local transaction. `Ok(Err(_))` is a cap.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        policy: &pb::OfflinePolicy,
        limit_left: Option<u64>,
        terminal: &str,
        request_id: &str,
        kind: &str,
        request: &[u8],
        amount: u64,
        fee: u64,
        label: &str,
        teller: &str,
        taken_at_ms: i64,
    ) -> Result<Result<String, CapRefusal>, String> {
        if amount > policy.one_max {
            return Ok(Err(CapRefusal::OneMax(policy.one_max)));
        }
        let mut conn = lock(&self.conn);
        let tx = conn.transaction().map_err(sql)?;
        let (count, queued): (u32, u64) = tx
            .query_row(
                "SELECT count(*), coalesce(sum(amount), 0) FROM item WHERE state = 'queued'",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(sql)?;
        if count >= policy.count_max {
            return Ok(Err(CapRefusal::CountMax(policy.count_max)));
        }
        if queued.saturating_add(amount) > policy.total_max {
            return Ok(Err(CapRefusal::TotalMax {
                max: policy.total_max,
                queued,
            }));
        }
        if let Some(left) = limit_left
            && queued.saturating_add(amount) > left
        {
            return Ok(Err(CapRefusal::Limit {
                left: left.saturating_sub(queued),
            }));
        }
        let n: i64 = tx
            .query_row(
                "INSERT INTO sequence VALUES ('voucher', 1)
                 ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let voucher = format!("{terminal}-T{n:06}");
        tx.execute(
            "INSERT INTO item (voucher, request_id, kind, request, amount, fee, label, teller, taken_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![voucher, request_id, kind, request, amount as i64, fee as i64, label, teller, taken_at_ms],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Ok(voucher))
    }

    fn items(&self, filter: &str) -> Result<Vec<Item>, String> {
        let conn = lock(&self.conn);
        let mut st = conn
            .prepare(&format!(
                "SELECT seq, voucher, request_id, kind, request, amount, fee, label, teller, taken_at_ms,
                        state, transaction_id, error_code, error_message, receipt_printed, refund_returned_at_ms
                 FROM item WHERE {filter} ORDER BY seq"
            ))
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                Ok(Item {
                    seq: r.get(0)?,
                    voucher: r.get(1)?,
                    request_id: r.get(2)?,
                    kind: r.get(3)?,
                    request: r.get(4)?,
                    amount: r.get::<_, i64>(5)? as u64,
                    fee: r.get::<_, i64>(6)? as u64,
                    label: r.get(7)?,
                    teller: r.get(8)?,
                    taken_at_ms: r.get(9)?,
                    state: r.get(10)?,
                    transaction_id: r.get(11)?,
                    error_code: r.get(12)?,
                    error_message: r.get(13)?,
                    receipt_printed: r.get::<_, i64>(14)? != 0,
                    refund_returned_at_ms: r.get(15)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// Items still to forward, oldest first.
    pub fn queued(&self) -> Result<Vec<Item>, String> {
        self.items("state = 'queued'")
    }

    /// Forwarded and done, whose final receipt has not printed yet.
    pub fn unprinted(&self) -> Result<Vec<Item>, String> {
        self.items("state = 'done' AND receipt_printed = 0")
    }

    /// Refused once forwarded, the customer's cash not yet handed back.
    pub fn refunds_due(&self) -> Result<Vec<Item>, String> {
        self.items("state = 'refused' AND refund_returned_at_ms IS NULL")
    }

    pub fn all(&self) -> Result<Vec<Item>, String> {
        self.items("1 = 1")
    }

    /// What the switch is told the outbox holds: waiting items, their
    /// total and the oldest's time; forwarded and refused so far; refunds
    /// still owed.
    pub fn report(&self) -> Result<pb::OutboxReport, String> {
        let conn = lock(&self.conn);
        conn.query_row(
            "SELECT
               coalesce(sum(state = 'queued'), 0),
               coalesce(sum(CASE WHEN state = 'queued' THEN amount + fee ELSE 0 END), 0),
               coalesce(min(CASE WHEN state = 'queued' THEN taken_at_ms END), 0),
               coalesce(sum(state = 'done'), 0),
               coalesce(sum(state = 'refused'), 0),
               coalesce(sum(state = 'refused' AND refund_returned_at_ms IS NULL), 0)
             FROM item",
            [],
            |r| {
                Ok(pb::OutboxReport {
                    queued: r.get::<_, i64>(0)? as u32,
                    queued_total: r.get::<_, i64>(1)? as u64,
                    oldest_taken_at_ms: r.get(2)?,
                    forwarded: r.get::<_, i64>(3)? as u64,
                    refused: r.get::<_, i64>(4)? as u64,
                    refunds_due: r.get::<_, i64>(5)? as u32,
                    ..Default::default()
                })
            },
        )
        .map_err(sql)
    }

    /// The switch's answer to a forwarded item.
    pub fn answered(
        &self,
        seq: i64,
        outcome: Result<&str, (&str, &str)>,
        now_ms: i64,
    ) -> Result<(), String> {
        let conn = lock(&self.conn);
        let n = match outcome {
            Ok(tx) => conn.execute(
                "UPDATE item SET state = 'done', transaction_id = ?2, answered_at_ms = ?3 WHERE seq = ?1 AND state = 'queued'",
                params![seq, tx, now_ms],
            ),
            Err((code, message)) => conn.execute(
                "UPDATE item SET state = 'refused', error_code = ?2, error_message = ?3, answered_at_ms = ?4 WHERE seq = ?1 AND state = 'queued'",
                params![seq, code, message, now_ms],
            ),
        }
        .map_err(sql)?;
        if n != 1 {
            return Err(format!("outbox item {seq} was not waiting for an answer"));
        }
        Ok(())
    }

    pub fn printed(&self, seq: i64) -> Result<(), String> {
        lock(&self.conn)
            .execute(
                "UPDATE item SET receipt_printed = 1 WHERE seq = ?1",
                params![seq],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn refund_returned(&self, seq: i64, now_ms: i64) -> Result<(), String> {
        let n = lock(&self.conn)
            .execute(
                "UPDATE item SET refund_returned_at_ms = ?2 WHERE seq = ?1 AND state = 'refused' AND refund_returned_at_ms IS NULL",
                params![seq, now_ms],
            )
            .map_err(sql)?;
        if n != 1 {
            return Err(format!("no refund due on outbox item {seq}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> pb::OfflinePolicy {
        pb::OfflinePolicy {
            top_up: true,
            bills: true,
            one_max: 1_000_000,
            total_max: 1_500_000,
            count_max: 3,
            max_age_ms: 86_400_000,
            ..Default::default()
        }
    }

    fn put(o: &Outbox, id: &str, amount: u64) -> Result<String, CapRefusal> {
        o.enqueue(
            &policy(),
            None,
            "tho-tang-1",
            id,
            "top_up",
            b"req",
            amount,
            0,
            "x",
            "Lan",
            1,
        )
        .unwrap()
    }

    #[test]
    fn caps_hold_and_vouchers_are_numbered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        assert_eq!(put(&o, "a", 2_000_000), Err(CapRefusal::OneMax(1_000_000)));
        assert_eq!(put(&o, "a", 1_000_000).unwrap(), "tho-tang-1-T000001");
        assert_eq!(
            put(&o, "b", 600_000),
            Err(CapRefusal::TotalMax {
                max: 1_500_000,
                queued: 1_000_000
            })
        );
        assert_eq!(put(&o, "b", 200_000).unwrap(), "tho-tang-1-T000002");
        assert_eq!(put(&o, "c", 100_000).unwrap(), "tho-tang-1-T000003");
        assert_eq!(put(&o, "d", 100_000), Err(CapRefusal::CountMax(3)));
        // The counter's own view of its limits caps what it queues too.
        let left = o
            .enqueue(
                &policy(),
                Some(1_350_000),
                "t",
                "e",
                "top_up",
                b"r",
                100_000,
                0,
                "x",
                "Lan",
                1,
            )
            .unwrap();
        assert!(matches!(
            left,
            Err(CapRefusal::CountMax(_)) | Err(CapRefusal::Limit { .. })
        ));

        // Answers: one done, one refused (a refund due until returned).
        let q = o.queued().unwrap();
        assert_eq!(
            q.iter().map(|i| i.request_id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        o.answered(q[0].seq, Ok("tx-1"), 5).unwrap();
        o.answered(q[1].seq, Err(("bill_already_paid", "paid elsewhere")), 5)
            .unwrap();
        assert!(
            o.answered(q[0].seq, Ok("tx-again"), 6).is_err(),
            "answered once"
        );
        assert_eq!(o.queued().unwrap().len(), 1);
        assert_eq!(o.unprinted().unwrap()[0].transaction_id, "tx-1");
        assert_eq!(o.refunds_due().unwrap()[0].error_code, "bill_already_paid");
        let r = o.report().unwrap();
        assert_eq!(
            (
                r.queued,
                r.queued_total,
                r.forwarded,
                r.refused,
                r.refunds_due
            ),
            (1, 100_000, 1, 1, 1)
        );
        o.refund_returned(q[1].seq, 7).unwrap();
        assert_eq!(o.report().unwrap().refunds_due, 0);
        assert!(o.refunds_due().unwrap().is_empty());
        // A new voucher number never repeats one given before.
        assert_eq!(put(&o, "f", 100_000).unwrap(), "tho-tang-1-T000004");
    }

    #[test]
    fn what_was_seen_is_kept_and_ages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        {
            let o = Outbox::open(&path).unwrap();
            o.saw_name("970422", "0123456789", "NGUYEN VAN AN", 1_000)
                .unwrap();
            o.put_policy(&policy(), 1_000).unwrap();
        }
        let o = Outbox::open(&path).unwrap();
        assert_eq!(
            o.seen_name("970422", "0123456789", 500).unwrap().as_deref(),
            Some("NGUYEN VAN AN")
        );
        assert_eq!(o.seen_name("970422", "0123456789", 1_001).unwrap(), None);
        assert_eq!(o.policy().unwrap().unwrap().one_max, 1_000_000);
    }

    #[test]
    fn fees_follow_the_switchs_rule() {
        // 0.5 %, at least 3.000, at most 30.000 (the cash-in default).
        let f = pb::OfflineFee {
            kind: 0,
            flat: 0,
            percent_bp: 50,
            min: 3_000,
            max: 30_000,
        };
        assert_eq!(fee(&f, 500_000), 3_000);
        assert_eq!(fee(&f, 1_000_000), 5_000);
        assert_eq!(fee(&f, 1_000_100), 5_001); // 5000.5 rounds away from zero
        assert_eq!(fee(&f, 100_000_000), 30_000);
    }
}
