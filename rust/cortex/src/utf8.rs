//! Incremental UTF-8 decoding of token pieces.
//!
//! A token can end in the middle of a multi-byte character; the rest arrives with the next token. Rules: complete
//! characters are emitted as soon as they are whole; an incomplete tail (at most 3 bytes) is held; bytes that can
//! never be valid become U+FFFD, as does a tail still incomplete at `finish`.

/// One per stream, alive for the whole generation.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    tail: Vec<u8>,
}

impl Utf8Stream {
    /// Appends the text that `bytes` completes to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        if self.tail.is_empty() {
            self.decode(bytes, out);
        } else {
            let mut joined = std::mem::take(&mut self.tail);
            joined.extend_from_slice(bytes);
            self.decode(&joined, out);
        }
    }

    /// Flushes a dangling incomplete character as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.tail.is_empty() {
            self.tail.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }

    fn decode(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(err) => {
                    let (valid, rest) = bytes.split_at(err.valid_up_to());
                    // `valid_up_to` marks the longest valid prefix, so this cannot fail.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            bytes = &rest[bad..];
                        }
                        None => {
                            self.tail.extend_from_slice(rest);
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_pieces(pieces: &[&[u8]]) -> String {
        let mut dec = Utf8Stream::default();
        let mut out = String::new();
        for p in pieces {
            dec.push(p, &mut out);
        }
        dec.finish(&mut out);
        out
    }

    #[test]
    fn every_split_of_multibyte_text_decodes_the_same() {
        let text = "aé中🦀z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(decode_pieces(&[&text[..i], &text[i..j], &text[j..]]), "aé中🦀z", "split at {i},{j}");
            }
        }
    }

    #[test]
    fn holds_nothing_back_once_a_character_is_whole() {
        let mut dec = Utf8Stream::default();
        let mut out = String::new();
        dec.push(&[0xF0, 0x9F], &mut out);
        assert_eq!(out, "");
        dec.push(&[0xA6, 0x80], &mut out);
        assert_eq!(out, "🦀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(decode_pieces(&[b"a\xFFb"]), "a\u{FFFD}b");
        assert_eq!(decode_pieces(&[b"a\xE4\xB8"]), "a\u{FFFD}");
        assert_eq!(decode_pieces(&[b"\xE4", b"x"]), "\u{FFFD}x");
    }
}
