//! Errors that say what is wrong and where: the tag path (`38/01/01`) and
//! the character offset in the payload.

use std::fmt;

/// What kind of problem (stable, for callers that branch on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Empty, or longer than 512 characters.
    PayloadLength,
    /// An object's id or length is not two digits, or the header is cut.
    Structure,
    /// A length runs past the end of the payload or template.
    LengthOverrun,
    /// An id appears twice at the same level.
    DuplicateId,
    /// Payload format indicator (00) missing, not first or not `01`.
    FormatIndicator,
    /// CRC object (63) missing, not last, or malformed.
    CrcPlacement,
    /// The CRC does not match the payload.
    CrcMismatch,
    /// A field's value breaks its format (numeric, length, amount, ...).
    Field,
    /// A required field is missing.
    Missing,
    /// A valid EMVCo payload that is not a VietQR, or breaks the profile.
    NotVietQr,
    /// Generation input that cannot be encoded.
    Unencodable,
}

/// A QR payload problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrError {
    pub kind: ErrorKind,
    /// The tag path (`38/01/01`), empty for the payload as a whole.
    pub path: String,
    /// Character offset in the payload where the problem is, if it has one.
    pub offset: Option<usize>,
    pub message: String,
}

impl QrError {
    pub(crate) fn new(
        kind: ErrorKind,
        path: impl fmt::Display,
        offset: Option<usize>,
        message: impl Into<String>,
    ) -> QrError {
        QrError {
            kind,
            path: path.to_string(),
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(o) = self.offset {
            write!(f, " at offset {o}")?;
        }
        Ok(())
    }
}

impl std::error::Error for QrError {}

/// Where an object sits: up to four ids, e.g. `38/01/01`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagPath {
    ids: [u8; 4],
    len: u8,
}

impl TagPath {
    pub const ROOT: TagPath = TagPath {
        ids: [0; 4],
        len: 0,
    };
    pub fn child(self, id: u8) -> TagPath {
        let mut p = self;
        if (p.len as usize) < p.ids.len() {
            p.ids[p.len as usize] = id;
            p.len += 1;
        }
        p
    }
    pub fn ids(&self) -> &[u8] {
        &self.ids[..self.len as usize]
    }
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.ids().iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{id:02}")?;
        }
        Ok(())
    }
}
