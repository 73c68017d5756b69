//! Fixed little-endian layouts for everything the ledger writes: journal
//! records, index values and checkpoints. Hand-written because these bytes are
//! the durable format: every field is listed once, in order, and a decode of
//! a short or malformed buffer is an error, never a panic.

use crate::reject::TransferReject;
use crate::types::*;

/// Appends fixed-width little-endian fields to a buffer.
pub(crate) struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u128(&mut self, v: u128) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// A buffer that ended early or held a value no encoder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Reads fixed-width little-endian fields from a buffer.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        if self.buf.len() < N {
            return Err(Malformed("buffer ends inside a field"));
        }
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        Ok(head.try_into().expect("split_at returned N bytes"))
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    pub fn u128(&mut self) -> Result<u128, Malformed> {
        Ok(u128::from_le_bytes(self.take()?))
    }
}

pub(crate) const NEW_ACCOUNT_SIZE: usize = 16 + 16 + 2 + 2 + 2;
pub(crate) const NEW_TRANSFER_SIZE: usize = 16 * 5 + 8 + 4 + 2 + 2;

pub(crate) fn put_new_account(e: &mut Enc, a: &NewAccount) {
    e.u128(a.id)
        .u128(a.user_data)
        .u16(a.currency)
        .u16(a.code)
        .u16(a.flags.bits());
}

pub(crate) fn get_new_account(d: &mut Dec) -> Result<NewAccount, Malformed> {
    Ok(NewAccount {
        id: d.u128()?,
        user_data: d.u128()?,
        currency: d.u16()?,
        code: d.u16()?,
        flags: account_flags(d.u16()?)?,
    })
}

pub(crate) fn put_new_transfer(e: &mut Enc, t: &NewTransfer) {
    e.u128(t.id)
        .u128(t.debit_account_id)
        .u128(t.credit_account_id)
        .u128(t.pending_id)
        .u128(t.user_data)
        .u64(t.amount)
        .u32(t.timeout_ms)
        .u16(t.code)
        .u16(t.flags.bits());
}

pub(crate) fn get_new_transfer(d: &mut Dec) -> Result<NewTransfer, Malformed> {
    Ok(NewTransfer {
        id: d.u128()?,
        debit_account_id: d.u128()?,
        credit_account_id: d.u128()?,
        pending_id: d.u128()?,
        user_data: d.u128()?,
        amount: d.u64()?,
        timeout_ms: d.u32()?,
        code: d.u16()?,
        flags: transfer_flags(d.u16()?)?,
    })
}

fn account_flags(bits: u16) -> Result<AccountFlags, Malformed> {
    AccountFlags::from_bits(bits).ok_or(Malformed("unknown account flag"))
}

fn transfer_flags(bits: u16) -> Result<TransferFlags, Malformed> {
    TransferFlags::from_bits(bits).ok_or(Malformed("unknown transfer flag"))
}

pub(crate) fn put_account(e: &mut Enc, a: &Account) {
    e.u128(a.id)
        .u128(a.user_data)
        .u128(a.debits_pending)
        .u128(a.debits_posted)
        .u128(a.credits_pending)
        .u128(a.credits_posted)
        .u64(a.timestamp)
        .u16(a.currency)
        .u16(a.code)
        .u16(a.flags.bits());
}

pub(crate) fn get_account(d: &mut Dec) -> Result<Account, Malformed> {
    Ok(Account {
        id: d.u128()?,
        user_data: d.u128()?,
        debits_pending: d.u128()?,
        debits_posted: d.u128()?,
        credits_pending: d.u128()?,
        credits_posted: d.u128()?,
        timestamp: d.u64()?,
        currency: d.u16()?,
        code: d.u16()?,
        flags: account_flags(d.u16()?)?,
    })
}

pub(crate) fn status_code(s: TransferStatus) -> u8 {
    match s {
        TransferStatus::Pending => 1,
        TransferStatus::Posted => 2,
        TransferStatus::Voided => 3,
        TransferStatus::Expired => 4,
    }
}

pub(crate) fn put_transfer(e: &mut Enc, t: &Transfer) {
    e.u128(t.id)
        .u128(t.debit_account_id)
        .u128(t.credit_account_id)
        .u128(t.pending_id)
        .u128(t.user_data)
        .u64(t.amount)
        .u64(t.amount_posted)
        .u64(t.timestamp)
        .u32(t.timeout_ms)
        .u16(t.code)
        .u16(t.flags.bits())
        .u8(status_code(t.status));
}

pub(crate) fn get_transfer(d: &mut Dec) -> Result<Transfer, Malformed> {
    Ok(Transfer {
        id: d.u128()?,
        debit_account_id: d.u128()?,
        credit_account_id: d.u128()?,
        pending_id: d.u128()?,
        user_data: d.u128()?,
        amount: d.u64()?,
        amount_posted: d.u64()?,
        timestamp: d.u64()?,
        timeout_ms: d.u32()?,
        code: d.u16()?,
        flags: transfer_flags(d.u16()?)?,
        status: status_from_code(d.u8()?)?,
    })
}

pub(crate) fn status_from_code(code: u8) -> Result<TransferStatus, Malformed> {
    Ok(match code {
        1 => TransferStatus::Pending,
        2 => TransferStatus::Posted,
        3 => TransferStatus::Voided,
        4 => TransferStatus::Expired,
        _ => return Err(Malformed("unknown transfer status")),
    })
}

pub(crate) fn put_balances(e: &mut Enc, b: &Balances) {
    e.u64(b.timestamp)
        .u128(b.debits_pending)
        .u128(b.debits_posted)
        .u128(b.credits_pending)
        .u128(b.credits_posted);
}

pub(crate) fn get_balances(d: &mut Dec) -> Result<Balances, Malformed> {
    Ok(Balances {
        timestamp: d.u64()?,
        debits_pending: d.u128()?,
        debits_posted: d.u128()?,
        credits_pending: d.u128()?,
        credits_posted: d.u128()?,
    })
}

pub(crate) fn get_reject(d: &mut Dec) -> Result<TransferReject, Malformed> {
    TransferReject::from_code(d.u16()?).ok_or(Malformed("unknown reject code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip_and_short_buffers_are_errors() {
        let t = NewTransfer {
            id: 7,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 9,
            pending_id: 3,
            user_data: u128::MAX,
            code: 4,
            flags: TransferFlags::PENDING | TransferFlags::LINKED,
            timeout_ms: 60_000,
        };
        let mut buf = Vec::new();
        put_new_transfer(&mut Enc(&mut buf), &t);
        assert_eq!(buf.len(), NEW_TRANSFER_SIZE);
        assert_eq!(get_new_transfer(&mut Dec::new(&buf)), Ok(t));
        for cut in 0..buf.len() {
            assert!(get_new_transfer(&mut Dec::new(&buf[..cut])).is_err());
        }
        let a = NewAccount {
            id: 1,
            currency: 704,
            code: 2,
            flags: AccountFlags::HISTORY,
            user_data: 5,
        };
        let mut buf = Vec::new();
        put_new_account(&mut Enc(&mut buf), &a);
        assert_eq!(buf.len(), NEW_ACCOUNT_SIZE);
        assert_eq!(get_new_account(&mut Dec::new(&buf)), Ok(a));
        let mut bad = buf.clone();
        bad[NEW_ACCOUNT_SIZE - 2] = 0xff;
        assert!(get_new_account(&mut Dec::new(&bad)).is_err());
    }
}
