-- The ledger in PostgreSQL (issue #14). Ids are 16-byte big-endian
-- integers (bytea orders like the number). Records are the ledger's own
-- encodings (`body`), with the columns queries and checks need beside them.

CREATE TABLE ledger_accounts (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    -- ledger::Account::encode, balances zero: they live in ledger_balances.
    body bytea NOT NULL,
    currency integer NOT NULL,
    code integer NOT NULL,
    -- A limit flag: its balance lives in shard 0 only, locked to change.
    limited boolean NOT NULL,
    created_ns bigint NOT NULL
);

-- An account's balance is the sum of its shards. An account without
-- limits takes each writer's changes in that writer's own shard, so that
-- hot accounts (a bank's settlement account, touched by every flow to that
-- bank) never serialise the nodes on one row; a shard may go negative, the
-- sum never. An account with a limit has shard 0 only.
CREATE TABLE ledger_balances (
    account_id bytea NOT NULL REFERENCES ledger_accounts (id),
    shard integer NOT NULL,
    debits_pending numeric(40, 0) NOT NULL DEFAULT 0,
    debits_posted numeric(40, 0) NOT NULL DEFAULT 0,
    credits_pending numeric(40, 0) NOT NULL DEFAULT 0,
    credits_posted numeric(40, 0) NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, shard)
);

-- Commit order for settlement windows: a window's close takes a SHARE lock
-- on ledger_transfers (waiting for every writer in flight, holding new ones
-- back) and reads this sequence; every transfer committed before has a
-- lower number, every transfer after a higher one.
CREATE SEQUENCE ledger_commit_seq;

-- Every writer (one per node and process start) takes a shard of its own.
CREATE SEQUENCE ledger_shard_seq START 1;

CREATE TABLE ledger_transfers (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    seq bigint NOT NULL DEFAULT nextval('ledger_commit_seq') UNIQUE,
    -- ledger::Transfer::encode, rewritten when its status changes.
    body bytea NOT NULL,
    debit_account_id bytea NOT NULL,
    credit_account_id bytea NOT NULL,
    code integer NOT NULL,
    amount numeric(20, 0) NOT NULL,
    -- 1 pending, 2 posted, 3 voided, 4 expired (the ledger's codes).
    status smallint NOT NULL,
    -- Ledger time (ns) at which an unresolved pending transfer expires.
    expires_ns bigint,
    timestamp_ns bigint NOT NULL
);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, seq);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, seq);
CREATE INDEX ledger_transfers_expiring ON ledger_transfers (expires_ns) WHERE status = 1;

-- Events that failed: their ids keep failing, as in the embedded ledger.
CREATE TABLE ledger_failed (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    -- ledger::NewTransfer::encode.
    event bytea NOT NULL,
    reject integer NOT NULL
);
