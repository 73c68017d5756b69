//! The provisioned network: post offices, communes, terminals and their
//! shifts, merchants, operators, banks' credentials, and the marks of a
//! provisioned store (the master key's check value, the first start's).

use super::*;

impl Store {
    /// Record a shift: the terminal's current one, and its history.
    pub fn put_shift(&self, s: &ShiftRecord) -> Result<(), StoreError> {
        let record = encode(s);
        self.kv.commit(|w| {
            w.put(
                Tree::Entities,
                format!("shift/{}", s.terminal_id).as_bytes(),
                record.clone(),
            );
            w.put(
                Tree::Entities,
                format!(
                    "shift_history/{}/{:020}/{}",
                    s.terminal_id, s.opened_at_ms, s.id
                )
                .as_bytes(),
                record.clone(),
            );
            Ok::<_, StoreError>(())
        })
    }

    /// The terminal's latest shift (open or closed).
    pub fn shift(&self, terminal: &str) -> Result<Option<ShiftRecord>, StoreError> {
        self.entity("shift", terminal)
    }

    pub fn put_post_office(&self, p: &PostOffice) -> Result<(), StoreError> {
        self.put_entity("post_office", &p.id, p)
    }

    pub fn post_offices(&self) -> Result<Vec<PostOffice>, StoreError> {
        self.entities("post_office")
    }

    pub fn post_office(&self, id: &str) -> Result<Option<PostOffice>, StoreError> {
        self.entity("post_office", id)
    }

    pub fn put_commune(&self, c: &Commune) -> Result<(), StoreError> {
        self.put_entity("commune", &c.id, c)
    }

    pub fn communes(&self) -> Result<Vec<Commune>, StoreError> {
        self.entities("commune")
    }

    pub fn commune(&self, id: &str) -> Result<Option<Commune>, StoreError> {
        self.entity("commune", id)
    }

    pub fn put_fee_catalogue(&self, c: &FeeCatalogue) -> Result<(), StoreError> {
        self.put_entity("fee_catalogue", &c.collector_id, c)
    }

    pub fn fee_catalogue(&self, collector_id: &str) -> Result<Option<FeeCatalogue>, StoreError> {
        self.entity("fee_catalogue", collector_id)
    }

    pub fn put_fee_request(&self, r: &FeeRequest) -> Result<(), StoreError> {
        self.put_entity("fee_request", &r.qr_id, r)
    }

    pub fn fee_request(&self, qr_id: &str) -> Result<Option<FeeRequest>, StoreError> {
        self.entity("fee_request", qr_id)
    }

    pub fn put_outbox_report(&self, r: &OutboxReport) -> Result<(), StoreError> {
        self.put_entity("outbox_report", &r.terminal_id, r)
    }

    pub fn outbox_reports(&self) -> Result<Vec<OutboxReport>, StoreError> {
        self.entities("outbox_report")
    }

    pub fn put_terminal(&self, t: &Terminal) -> Result<(), StoreError> {
        self.put_entity("terminal", &t.id, t)
    }

    pub fn terminals(&self) -> Result<Vec<Terminal>, StoreError> {
        self.entities("terminal")
    }

    pub fn terminal(&self, id: &str) -> Result<Option<Terminal>, StoreError> {
        self.entity("terminal", id)
    }

    pub fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.entity("operator", id)
    }

    pub fn bank_client(&self, bin: &str) -> Result<Option<BankClient>, StoreError> {
        self.entity("bank_client", bin)
    }

    pub fn put_operator(&self, o: &Operator) -> Result<(), StoreError> {
        self.put_entity("operator", &o.id, o)
    }

    pub fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.entities("operator")
    }

    pub fn put_merchant(&self, m: &Merchant) -> Result<(), StoreError> {
        self.put_entity("merchant", &m.id, m)
    }

    pub fn merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        self.entities("merchant")
    }

    pub fn merchant(&self, id: &str) -> Result<Option<Merchant>, StoreError> {
        self.entity("merchant", id)
    }

    pub fn put_bank_client(&self, b: &BankClient) -> Result<(), StoreError> {
        self.put_entity("bank_client", &b.bin, b)
    }

    pub fn bank_clients(&self) -> Result<Vec<BankClient>, StoreError> {
        self.entities("bank_client")
    }

    /// The value that tells whether a master key is the one this store's
    /// secrets are sealed with (`secrets.rs`).
    pub fn master_key_check(&self) -> Result<Option<crate::secrets::SealedSecret>, StoreError> {
        self.entity("meta", "master_key_check")
    }

    pub fn put_master_key_check(
        &self,
        check: &crate::secrets::SealedSecret,
    ) -> Result<(), StoreError> {
        self.put_entity("meta", "master_key_check", check)
    }

    pub fn is_provisioned(&self) -> Result<bool, StoreError> {
        Ok(self.kv.get(Tree::Entities, b"meta/provisioned")?.is_some())
    }

    pub fn mark_provisioned(&self) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Entities, b"meta/provisioned", b"1".to_vec())?)
    }
}
