//! Settlement windows as the store keeps them.

use super::*;

impl Store {
    pub fn put_window(&self, w: &WindowRecord) -> Result<(), StoreError> {
        self.put_windows(&[w])
    }

    /// Several windows in one atomic write (a close and the next opening).
    pub fn put_windows(&self, ws: &[&WindowRecord]) -> Result<(), StoreError> {
        let records: Vec<([u8; 8], Vec<u8>)> = ws
            .iter()
            .map(|w| (w.id.to_be_bytes(), encode(*w)))
            .collect();
        self.kv.commit(|t| {
            for (k, v) in records.clone() {
                t.put(Tree::Windows, &k, v);
            }
            Ok::<_, StoreError>(())
        })
    }

    pub fn windows(&self) -> Result<Vec<WindowRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.kv.scan_prefix(Tree::Windows, b"") {
            let (k, v) = kv?;
            out.push(decode("settlement window", &k, &v)?);
        }
        Ok(out)
    }
}
