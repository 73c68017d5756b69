-- One transfer: an insert and two balance updates, in one transaction
-- (synchronous commit is the server's default). The lower account id is
-- updated first, so that two transfers never deadlock on each other.
\set a random(1, 10000)
\set b random(1, 10000)
BEGIN;
INSERT INTO bench_transfers (debit, credit, amount) VALUES (:a, :b, 1);
\if :a < :b
UPDATE bench_accounts SET balance = balance - 1 WHERE id = :a;
UPDATE bench_accounts SET balance = balance + 1 WHERE id = :b;
\else
UPDATE bench_accounts SET balance = balance + 1 WHERE id = :b;
UPDATE bench_accounts SET balance = balance - 1 WHERE id = :a;
\endif
COMMIT;
