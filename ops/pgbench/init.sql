-- PostgreSQL's own double-entry baseline (issue #14): accounts with a
-- balance, transfers appended. Loaded by switch/examples/pg_ledger_bench.rs
-- (or by hand: psql -f init.sql, then pgbench -n -f double_entry.sql).
DROP TABLE IF EXISTS bench_transfers, bench_accounts;
CREATE TABLE bench_accounts (id integer PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
CREATE TABLE bench_transfers (
    id bigserial PRIMARY KEY,
    debit integer NOT NULL,
    credit integer NOT NULL,
    amount bigint NOT NULL
);
INSERT INTO bench_accounts (id) SELECT generate_series(1, 10000);
