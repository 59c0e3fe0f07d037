//! JSON scanning for tool calls: where a value or a string ends, without building it.
//!
//! Rules: a value is scanned by its structure only (strings, escapes, bracket depth), so its text can be streamed as
//! it arrives; only strings that the parser needs whole (keys, names, ids) are decoded, by `serde_json`.

/// Where a streamed JSON value has got to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Scan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    begun: bool,
    scalar: bool,
}

/// The outcome of scanning some text of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// All of the text belongs to the value, which goes on.
    More,
    /// The value ended; the text after it is not its.
    Done,
    /// The text cannot start a JSON value.
    Bad,
}

impl Scan {
    /// Scans `text` (the value's next piece, leading white space already dropped); returns how many bytes of it
    /// belong to the value.
    pub(super) fn advance(&mut self, text: &str) -> (usize, Step) {
        for (i, c) in text.char_indices() {
            if !self.begun {
                self.begun = true;
                match c {
                    '{' | '[' => self.depth = 1,
                    '"' => self.in_string = true,
                    c if is_scalar_char(c) => self.scalar = true,
                    _ => return (0, Step::Bad),
                }
            } else if self.scalar {
                // A number or literal has no closing character: the first one that cannot be its ends it.
                if !is_scalar_char(c) {
                    return (i, Step::Done);
                }
            } else if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return (i + 1, Step::Done);
                    }
                }
            } else {
                match c {
                    '"' => self.in_string = true,
                    '{' | '[' => self.depth += 1,
                    '}' | ']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return (i + 1, Step::Done);
                        }
                    }
                    _ => {}
                }
            }
        }
        (text.len(), Step::More)
    }
}

fn is_scalar_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')
}

/// `text` starts with `"`: the decoded string and its length in bytes, `None` while it is unfinished, `Some(Err)`
/// when it is not a valid JSON string.
pub(super) fn read_string(text: &str) -> Option<Result<(String, usize), ()>> {
    let mut scan = Scan::default();
    match scan.advance(text) {
        (end, Step::Done) => Some(serde_json::from_str(&text[..end]).map(|s| (s, end)).map_err(|_| ())),
        (_, Step::More) => None,
        (_, Step::Bad) => Some(Err(())),
    }
}

/// A character a function name may hold (OpenAI allows `[a-zA-Z0-9_-]`; some models namespace with `.` or `:`).
pub(super) fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_where_their_structure_ends() {
        let cases = [
            (r#"{"a": "}\"{"} tail"#, Some(13)),
            (r#"[1, [2, {"x": "]"}]],"#, Some(20)),
            ("\"é\\\"🦀\" x", Some(10)),
            ("123,", Some(3)),
            ("true}", Some(4)),
            (r#"{"open": "#, None),
        ];
        for (text, want) in cases {
            let mut scan = Scan::default();
            let (n, step) = scan.advance(text);
            match want {
                Some(end) => assert_eq!((n, step), (end, Step::Done), "{text:?}"),
                None => assert_eq!((n, step), (text.len(), Step::More), "{text:?}"),
            }
        }
        assert_eq!(Scan::default().advance("}"), (0, Step::Bad));
    }

    #[test]
    fn strings_are_decoded_whole() {
        assert_eq!(read_string(r#""a\"b" rest"#), Some(Ok(("a\"b".to_string(), 6))));
        assert_eq!(read_string(r#""unfinished\""#), None);
        assert_eq!(read_string("\"bad \\q\""), Some(Err(())));
    }
}
