-- The switch's own records in PostgreSQL (issue #14): the same trees and
-- keys the embedded store keeps (store/kv.rs names the trees), one row a
-- key. Values are the store's versioned encodings.
CREATE TABLE switch_kv (
    tree smallint NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

-- Numbers never handed out twice, on any node (merchants' notices,
-- reconciliation runs).
CREATE SEQUENCE switch_ids;
