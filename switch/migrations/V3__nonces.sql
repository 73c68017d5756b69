-- Nonces every node has seen within the replay window (issue #14): a
-- request replayed to another node is refused. UNLOGGED: a crash of the
-- server empties it (then the timestamp window alone bounds a replay, as
-- on one node after a restart); it is not copied to standbys.
CREATE UNLOGGED TABLE switch_nonces (
    key text PRIMARY KEY,
    expires_ms bigint NOT NULL
);
CREATE INDEX switch_nonces_expiry ON switch_nonces (expires_ms);
