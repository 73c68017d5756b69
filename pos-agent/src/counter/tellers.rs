//! The tellers of one counter: names and passwords the head of the post
//! office sets (`pos-agent counter teller add`), kept in the counter's
//! state directory as Argon2id hashes, never in the clear.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many tellers per counter: a post office has a handful.
pub const TELLERS_MAX: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Teller {
    /// What the teller types to sign in: 1 to 32 lower-case letters, digits,
    /// `.`, `_` or `-`.
    pub name: String,
    /// As records and receipts show it ("Nguyễn Thị Lan").
    pub full_name: String,
    /// Argon2id, PHC string (salt and parameters inside).
    pub password_hash: String,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Book {
    #[serde(default)]
    pub tellers: Vec<Teller>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("tellers.toml")
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Book {
    /// The book in `state_dir`; none yet is an empty book. A file that does
    /// not parse is an error, never an empty book.
    pub fn load(state_dir: &Path) -> Result<Book, String> {
        let path = path(state_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Written whole to a temporary file, fsync'd, then renamed over the
    /// old one: a crash leaves the old book or the new, never half.
    pub fn save(&self, state_dir: &Path) -> Result<(), String> {
        use std::io::Write;
        std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
        let path = path(state_dir);
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("toml.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Add a teller, or set a new password (and name) for one.
    pub fn set(&mut self, name: &str, full_name: &str, password: &str) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!(
                "a teller's sign-in name is 1 to 32 lower-case letters, digits, '.', '_' or '-', not {name:?}"
            ));
        }
        let full_name = full_name.trim();
        if full_name.is_empty()
            || full_name.chars().count() > 64
            || full_name.chars().any(char::is_control)
        {
            return Err("a teller's full name is 1 to 64 characters".to_string());
        }
        if password.chars().count() < 8 {
            return Err("a password is at least 8 characters".to_string());
        }
        let hash = hash(password)?;
        let full = self.tellers.len() >= TELLERS_MAX;
        match self.tellers.iter_mut().find(|t| t.name == name) {
            Some(t) => {
                t.full_name = full_name.to_string();
                t.password_hash = hash;
                t.disabled = false;
            }
            None if full => {
                return Err(format!("a counter has at most {TELLERS_MAX} tellers"));
            }
            None => self.tellers.push(Teller {
                name: name.to_string(),
                full_name: full_name.to_string(),
                password_hash: hash,
                disabled: false,
            }),
        }
        Ok(())
    }

    pub fn disable(&mut self, name: &str) -> Result<(), String> {
        let t = self
            .tellers
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no teller {name:?} at this counter"))?;
        t.disabled = true;
        Ok(())
    }

    /// The teller whose name and password these are, if enabled. The hash
    /// is checked even for an unknown name, so that timing does not tell
    /// which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<&Teller> {
        let found = self.tellers.iter().find(|t| t.name == name && !t.disabled);
        let dummy =
            DUMMY_HASH.get_or_init(|| hash("no teller has this password").unwrap_or_default());
        let hash = found.map_or(dummy.as_str(), |t| t.password_hash.as_str());
        let ok = verify(hash, password);
        found.filter(|_| ok)
    }
}

/// A hash of a password nobody signs in with, checked for unknown names.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Argon2id with the crate's defaults (19 MiB, 2 passes), as the console.
fn hash(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let salt =
        argon2::password_hash::SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

fn verify(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teller_signs_in_with_their_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = Book::load(dir.path()).unwrap();
        assert!(book.tellers.is_empty());
        book.set("lan", "Nguyễn Thị Lan", "mật-khẩu-123").unwrap();
        book.save(dir.path()).unwrap();
        let book = Book::load(dir.path()).unwrap();
        assert!(
            !std::fs::read_to_string(path(dir.path()))
                .unwrap()
                .contains("mật-khẩu-123")
        );
        assert_eq!(
            book.verify("lan", "mật-khẩu-123").unwrap().full_name,
            "Nguyễn Thị Lan"
        );
        assert!(book.verify("lan", "wrong-password").is_none());
        assert!(book.verify("hoa", "mật-khẩu-123").is_none());
        let mut book = book;
        book.disable("lan").unwrap();
        assert!(book.verify("lan", "mật-khẩu-123").is_none());
        assert!(book.set("Lan Anh", "x", "12345678").is_err());
        assert!(book.set("hoa", "Hoa", "short").is_err());
    }

    #[test]
    fn a_damaged_book_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "tellers = [[[").unwrap();
        assert!(Book::load(dir.path()).is_err());
    }
}
