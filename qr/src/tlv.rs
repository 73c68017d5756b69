//! EMVCo's tag-length-value text: `id` (2 digits) `length` (2 digits, in
//! characters) `value`. The iterator works on the payload's bytes, counts
//! lengths in characters (a fast path when the text is ASCII) and never
//! slices a `str` off a character boundary.

use crate::crc;
use crate::error::{ErrorKind, QrError, TagPath};

/// The longest payload EMVCo allows, in characters.
pub const PAYLOAD_CHARS_MAX: usize = 512;

/// One data object as written in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a> {
    pub id: u8,
    /// The value exactly as written.
    pub value: &'a str,
    /// Character offset of the object's id in the payload.
    pub offset: usize,
    /// Where the object sits (`38/01`).
    pub path: TagPath,
}

impl<'a> Raw<'a> {
    /// Read the value as a template (its own objects).
    pub fn objects(&self) -> TlvIter<'a> {
        TlvIter::new(self.value, self.offset + 4, self.path, "template")
    }
    /// Character offset of the value.
    pub fn value_offset(&self) -> usize {
        self.offset + 4
    }
}

/// Data objects one after another, at one level of the tree.
#[derive(Clone, Debug)]
pub struct TlvIter<'a> {
    text: &'a str,
    /// Byte position in `text`.
    pos: usize,
    /// Character offset of `text[pos]` in the whole payload.
    offset: usize,
    ascii: bool,
    parent: TagPath,
    /// "payload" or "template", for errors.
    what: &'static str,
    done: bool,
}

impl<'a> TlvIter<'a> {
    pub fn new(text: &'a str, offset: usize, parent: TagPath, what: &'static str) -> TlvIter<'a> {
        TlvIter {
            text,
            pos: 0,
            offset,
            ascii: text.is_ascii(),
            parent,
            what,
            done: false,
        }
    }

    fn fail(
        &mut self,
        kind: ErrorKind,
        path: TagPath,
        message: String,
    ) -> Option<Result<Raw<'a>, QrError>> {
        self.done = true;
        let path = if path.ids().is_empty() {
            String::new()
        } else {
            path.to_string()
        };
        Some(Err(QrError::new(kind, path, Some(self.offset), message)))
    }

    /// The byte index `chars` characters after byte `from`, if the text has them.
    fn advance(&self, from: usize, chars: usize) -> Option<usize> {
        if self.ascii {
            let end = from + chars;
            return (end <= self.text.len()).then_some(end);
        }
        let mut it = self.text[from..].char_indices();
        match it.nth(chars) {
            Some((i, _)) => Some(from + i),
            None => (self.text[from..].chars().count() == chars).then_some(self.text.len()),
        }
    }
}

fn two_digits(b: &[u8]) -> Option<u8> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some((a - b'0') * 10 + (c - b'0')),
        _ => None,
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Raw<'a>, QrError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.text.len() {
            return None;
        }
        let rest = &self.text.as_bytes()[self.pos..];
        if rest.len() < 4 || !rest[..4].is_ascii() {
            let left = self.text[self.pos..].chars().count();
            if left < 4 {
                let msg = format!(
                    "object header cut short ({left} character{} left)",
                    if left == 1 { "" } else { "s" }
                );
                return self.fail(ErrorKind::Structure, self.parent, msg);
            }
        }
        let Some(id) = two_digits(&rest[..2]) else {
            let shown: String = self.text[self.pos..].chars().take(2).collect();
            return self.fail(
                ErrorKind::Structure,
                self.parent,
                format!("object id {shown:?} is not two digits"),
            );
        };
        let path = self.parent.child(id);
        let Some(len) = two_digits(&rest[2..4]) else {
            let shown: String = self.text[self.pos + 2..].chars().take(2).collect();
            return self.fail(
                ErrorKind::Structure,
                path,
                format!("length {shown:?} is not two digits"),
            );
        };
        if len == 0 {
            return self.fail(
                ErrorKind::Structure,
                path,
                "length 00 (lengths are 01 to 99)".into(),
            );
        }
        let start = self.pos + 4;
        let Some(end) = self.advance(start, usize::from(len)) else {
            let what = self.what;
            return self.fail(
                ErrorKind::LengthOverrun,
                path,
                format!("length {len:02} runs past the {what} end"),
            );
        };
        let raw = Raw {
            id,
            value: &self.text[start..end],
            offset: self.offset,
            path,
        };
        self.pos = end;
        self.offset += 4 + usize::from(len);
        Some(Ok(raw))
    }
}

/// Root ids whose value is a template of sub-objects.
pub fn is_template(id: u8) -> bool {
    matches!(id, 26..=51 | 62 | 64 | 80..=99)
}

/// Templates whose sub-objects must parse; others (other schemes' account
/// templates, unreserved 80-99, where wallets put primitives) are kept as
/// written when they do not.
fn is_strict_template(id: u8) -> bool {
    matches!(id, 38 | 62 | 64)
}

/// A root object and, for a template, its sub-objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object<'a> {
    pub raw: Raw<'a>,
    /// `Some` for a template whose value parsed as objects.
    pub children: Option<Vec<Raw<'a>>>,
}

impl<'a> Object<'a> {
    pub fn id(&self) -> u8 {
        self.raw.id
    }
    pub fn value(&self) -> &'a str {
        self.raw.value
    }
    /// The sub-object `id` of a template.
    pub fn child(&self, id: u8) -> Option<&Raw<'a>> {
        self.children.as_ref()?.iter().find(|c| c.id == id)
    }
}

/// A parsed EMVCo payload: objects in the order written, CRC verified.
/// Unknown and reserved objects are kept, so [`Payload::encode`] reproduces
/// the input exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    text: &'a str,
    objects: Vec<Object<'a>>,
}

/// The ids seen at one level of the tree: each may appear once.
#[derive(Default)]
pub(crate) struct Seen(u128);

impl Seen {
    pub(crate) fn check(&mut self, raw: &Raw) -> Result<(), QrError> {
        if self.0 & (1 << raw.id) != 0 {
            return Err(QrError::new(
                ErrorKind::DuplicateId,
                raw.path,
                Some(raw.offset),
                "id appears twice",
            ));
        }
        self.0 |= 1 << raw.id;
        Ok(())
    }
}

/// Collect a level's objects, refusing duplicate ids.
fn collect<'a>(it: TlvIter<'a>, out: &mut Vec<Raw<'a>>) -> Result<(), QrError> {
    let mut seen = Seen::default();
    for raw in it {
        let raw = raw?;
        seen.check(&raw)?;
        out.push(raw);
    }
    Ok(())
}

impl<'a> Payload<'a> {
    /// Parse and verify the structure and the CRC (EMVCo field rules are
    /// [`Payload::validate`]).
    pub fn parse(text: &'a str) -> Result<Payload<'a>, QrError> {
        let chars = if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        };
        if chars == 0 {
            return Err(QrError::new(
                ErrorKind::PayloadLength,
                "",
                None,
                "empty payload",
            ));
        }
        if chars > PAYLOAD_CHARS_MAX {
            return Err(QrError::new(
                ErrorKind::PayloadLength,
                "",
                None,
                format!("payload is {chars} characters, at most {PAYLOAD_CHARS_MAX} allowed"),
            ));
        }
        let mut objects: Vec<Object<'a>> = Vec::with_capacity(16);
        let mut seen = Seen::default();
        for raw in TlvIter::new(text, 0, TagPath::ROOT, "payload") {
            let raw = raw?;
            seen.check(&raw)?;
            let children = if is_template(raw.id) {
                let mut children = Vec::with_capacity(8);
                match collect(raw.objects(), &mut children) {
                    Ok(()) => Some(children),
                    Err(e) if is_strict_template(raw.id) => return Err(e),
                    Err(_) => None,
                }
            } else {
                None
            };
            objects.push(Object { raw, children });
        }
        let p = Payload { text, objects };
        p.check_crc()?;
        Ok(p)
    }

    /// Parse bytes that should be UTF-8.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Payload<'a>, QrError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            QrError::new(
                ErrorKind::NotUtf8,
                "",
                None,
                format!("not UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        Payload::parse(text)
    }

    fn check_crc(&self) -> Result<(), QrError> {
        let last = self.objects.last().expect("a parsed payload has objects");
        if let Some(crc) = self.objects.iter().find(|o| o.id() == 63) {
            if crc.raw.offset != last.raw.offset {
                return Err(QrError::new(
                    ErrorKind::CrcPlacement,
                    "63",
                    Some(crc.raw.offset),
                    "CRC is not the last object",
                ));
            }
        } else {
            return Err(QrError::new(
                ErrorKind::CrcPlacement,
                "63",
                None,
                "CRC (63) is missing",
            ));
        }
        let found = last.value();
        if found.len() != 4 || !found.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QrError::new(
                ErrorKind::CrcPlacement,
                "63",
                Some(last.raw.offset),
                format!("CRC {found:?} is not four hex digits"),
            ));
        }
        // Everything up to and including "6304", in bytes.
        let covered = self.text.len() - 4;
        let expected = crc::crc16_hex(&self.text.as_bytes()[..covered]);
        if !found.as_bytes().eq_ignore_ascii_case(&expected) {
            let expected = std::str::from_utf8(&expected).expect("hex is ASCII");
            return Err(QrError::new(
                ErrorKind::CrcMismatch,
                "",
                None,
                format!("crc mismatch: expected {expected}, found {found}"),
            ));
        }
        Ok(())
    }

    /// The payload text.
    pub fn as_str(&self) -> &'a str {
        self.text
    }
    /// The root objects in the order written.
    pub fn objects(&self) -> &[Object<'a>] {
        &self.objects
    }
    /// The root object `id`.
    pub fn get(&self, id: u8) -> Option<&Object<'a>> {
        self.objects.iter().find(|o| o.id() == id)
    }

    /// Encode the tree again: the same bytes as the input.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        for o in &self.objects {
            match &o.children {
                Some(children) => {
                    let mut inner = String::with_capacity(o.value().len());
                    for c in children {
                        write_object(&mut inner, c.id, c.value);
                    }
                    write_object(&mut out, o.id(), &inner);
                }
                None => write_object(&mut out, o.id(), o.value()),
            }
        }
        out
    }
}

/// Append `id`, the value's length in characters and the value.
/// The caller guarantees 1..=99 characters.
pub(crate) fn write_object(out: &mut String, id: u8, value: &str) {
    let len = value.chars().count();
    debug_assert!((1..=99).contains(&len) && id <= 99);
    out.push(char::from(b'0' + id / 10));
    out.push(char::from(b'0' + id % 10));
    out.push(char::from(b'0' + (len / 10) as u8));
    out.push(char::from(b'0' + (len % 10) as u8));
    out.push_str(value);
}

/// Append the CRC object to a payload that holds everything else.
pub(crate) fn seal(out: &mut String) {
    out.push_str("6304");
    let crc = crc::crc16_hex(out.as_bytes());
    out.push_str(std::str::from_utf8(&crc).expect("hex is ASCII"));
}
