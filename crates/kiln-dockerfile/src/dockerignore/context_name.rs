//! File names as text without losing their bytes.
//!
//! A Linux file name is any bytes but `/` and NUL; Dockerfile text, `.dockerignore` patterns
//! and kiln's path strings are UTF-8. BuildKit (Go) keeps names as byte strings end to end,
//! so a context file `bad\xff\xfename` lands in the image with exactly those bytes. kiln's
//! context walk, matchers and COPY plan handle names as `&str` in an *escaped* form instead
//! (the idea of Python's `surrogateescape`, PEP 383):
//!
//! - every byte that is not part of valid UTF-8 becomes one character of the reserved range
//!   U+10FF80..=U+10FFFF (the last 128 code points of plane 16, private use): byte `b` is
//!   `U+10FF00 + b`;
//! - valid UTF-8 stays as it is, except a character of the reserved range itself, whose four
//!   bytes are escaped one by one, so that the mapping is injective;
//! - [`decode_name`] turns each reserved character back into its byte.
//!
//! So `decode_name(&encode_name(bytes)) == bytes` for all bytes, two names that differ only in
//! invalid bytes stay different, and every UTF-8 name without reserved characters (all real
//! ones) is its own escaped form: keys, listings and messages of existing contexts do not
//! change. Text from a Dockerfile or `.dockerignore` goes through [`encode_name`] too (the
//! identity unless it holds reserved characters) before it is compared with names.
//!
//! For wildcards an escaped byte is one character, as an invalid byte is one rune for Go's
//! `filepath.Match` and `regexp` (`utf8.DecodeRuneInString` gives `RuneError` of width 1):
//! `?` and `*` match it, and a character class sees it as U+FFFD (see [`class_char`]).
//!
//! ```
//! use kiln_dockerfile::{decode_name, encode_name};
//!
//! let name = encode_name(b"bad\xff\xfename");
//! assert_eq!(name.chars().count(), 9);
//! assert_eq!(&*decode_name(&name), b"bad\xff\xfename");
//! assert_eq!(encode_name("plain.txt".as_bytes()), "plain.txt");
//! ```

use std::borrow::Cow;

/// The first character of the reserved range; byte `b` (`0x80..=0xFF`) escapes to
/// `ESCAPE_BASE + b`.
const ESCAPE_BASE: u32 = 0x10_FF00;
/// The lowest reserved character (byte 0x80 escaped): ASCII bytes are always valid UTF-8.
const RESERVED_FIRST: char = '\u{10FF80}';
/// UTF-8 of every reserved character starts with these two bytes (`F4 8F BE/BF xx`).
const RESERVED_LEAD: [u8; 2] = [0xF4, 0x8F];

/// Whether `ch` is a character of the reserved range (an escaped byte).
fn is_reserved(ch: char) -> bool {
    ch >= RESERVED_FIRST
}

/// The byte an escaped character stands for; `None` for any other character.
pub fn escaped_byte(ch: char) -> Option<u8> {
    if is_reserved(ch) {
        u8::try_from(u32::from(ch) - ESCAPE_BASE).ok()
    } else {
        None
    }
}

/// The character matchers compare with a class for `ch`: U+FFFD for an escaped byte, as Go
/// decodes an invalid byte to `utf8.RuneError`; `ch` itself otherwise.
pub fn class_char(ch: char) -> char {
    if is_reserved(ch) {
        char::REPLACEMENT_CHARACTER
    } else {
        ch
    }
}

fn escape(byte: u8, out: &mut String) {
    // Bytes 0x80..=0xFF map into U+10FF80..=U+10FFFF, all valid scalar values.
    out.push(char::from_u32(ESCAPE_BASE + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER));
}

/// The escaped text of a file name (or a `/`-separated path) given as raw bytes; borrowed
/// when the bytes are UTF-8 without reserved characters.
pub fn encode_name(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && !has_reserved_bytes(bytes)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if is_reserved(ch) {
                let mut utf8 = [0u8; 4];
                for &byte in ch.encode_utf8(&mut utf8).as_bytes() {
                    escape(byte, &mut out);
                }
            } else {
                out.push(ch);
            }
        }
        for &byte in chunk.invalid() {
            escape(byte, &mut out);
        }
    }
    Cow::Owned(out)
}

/// [`encode_name`] of text that is already UTF-8 (a Dockerfile path, a pattern): the text
/// itself unless it holds reserved characters.
pub fn encode_text(text: &str) -> Cow<'_, str> {
    encode_name(text.as_bytes())
}

/// The raw bytes of an escaped name; borrowed when it holds no escaped byte.
pub fn decode_name(name: &str) -> Cow<'_, [u8]> {
    if !has_reserved_bytes(name.as_bytes()) {
        return Cow::Borrowed(name.as_bytes());
    }
    let mut out = Vec::with_capacity(name.len());
    let mut utf8 = [0u8; 4];
    for ch in name.chars() {
        match escaped_byte(ch) {
            Some(byte) => out.push(byte),
            None => out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// An escaped name for messages: escaped bytes shown as `\xNN`, the rest as it is.
pub fn display_name(name: &str) -> Cow<'_, str> {
    use std::fmt::Write as _;
    if !has_reserved_bytes(name.as_bytes()) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for ch in name.chars() {
        match escaped_byte(ch) {
            Some(byte) => {
                let _ = write!(out, "\\x{byte:02x}");
            }
            None => out.push(ch),
        }
    }
    Cow::Owned(out)
}

/// Whether UTF-8 `bytes` may hold a reserved character (a fast scan for its lead bytes).
fn has_reserved_bytes(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == RESERVED_LEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let cases: [&[u8]; 8] = [
            b"",
            b"plain.txt",
            b"bad\xff\xfename",
            b"\x80",
            "caf\u{e9}".as_bytes(),
            b"caf\xe9",
            "x\u{10FF80}y\u{10FFFF}".as_bytes(),
            b"\xf4\x8f\xbe",
        ];
        for bytes in cases {
            let name = encode_name(bytes);
            assert_eq!(&*decode_name(&name), bytes, "{bytes:?}");
        }
    }

    #[test]
    fn utf8_names_are_their_own_escaped_form() {
        assert!(matches!(
            encode_name("app/main.py".as_bytes()),
            Cow::Borrowed("app/main.py")
        ));
        assert!(matches!(
            encode_name("Ünïcødé ☺".as_bytes()),
            Cow::Borrowed(_)
        ));
        assert!(matches!(decode_name("Ünïcødé ☺"), Cow::Borrowed(_)));
    }

    #[test]
    fn names_differing_in_invalid_bytes_stay_distinct() {
        let first = encode_name(b"a\xff");
        let second = encode_name(b"a\xfe");
        let replaced = encode_name("a\u{fffd}".as_bytes());
        // A valid name made of the reserved character for 0xff is escaped, not confused.
        let reserved = encode_name("a\u{10FFFF}".as_bytes());
        let all = [&first, &second, &replaced, &reserved];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // One invalid byte is one character, as it is one rune for Go.
        assert_eq!(first.chars().count(), 2);
        assert_eq!(reserved.chars().count(), 5);
    }

    #[test]
    fn displays_escaped_bytes_as_hex() {
        assert_eq!(
            display_name(&encode_name(b"bad\xff\xfename")),
            "bad\\xff\\xfename"
        );
        assert_eq!(display_name("plain"), "plain");
        assert_eq!(
            class_char(encode_name(b"\xff").chars().next().unwrap()),
            '\u{fffd}'
        );
        assert_eq!(class_char('a'), 'a');
    }
}
