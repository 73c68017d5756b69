//! End-to-end tests of the switch over real gRPC live in `tests/` of this
//! crate once the switch exists (issue "Switch server and the post-office
//! counter"). Until then the crates test themselves: `ledger/tests`,
//! `qr/tests`, `pos-agent/tests`.
