//! A shallow look at a GBNF grammar before llama.cpp parses it: how deeply its groups nest.
//!
//! Rules: llama.cpp's grammar parser is recursive descent, one level of C++ recursion per `(` group, on the
//! worker thread's stack; a request of a few thousand nested groups (well within the 64 KiB size cap) overflowed
//! that stack and killed the process. [`Sampling::validate`](crate::config::Sampling::validate) refuses a grammar
//! nested deeper than [`MAX_GRAMMAR_NESTING`] first. The scan knows just enough of the syntax to skip what is not
//! a group: `"literals"` and `[classes]` (with `\` escapes) and `#` comments to the end of the line. It uses
//! nothing else of the crate.

/// The deepest nesting of `( … )` groups a grammar may have: hand-written and generated grammars use a handful.
pub const MAX_GRAMMAR_NESTING: usize = 128;

/// The deepest nesting of `( … )` groups in `grammar`, outside literals, character classes and comments. A `)`
/// without its `(` is left for llama.cpp to refuse.
pub fn nesting(grammar: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut chars = grammar.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            '"' => skip_until(&mut chars, '"'),
            '[' => skip_until(&mut chars, ']'),
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' || c == '\r' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    deepest
}

/// Skips past the next unescaped `end` (a `\` escapes the character after it).
fn skip_until(chars: &mut std::str::Chars<'_>, end: char) {
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_groups_outside_literals_classes_and_comments() {
        let cases = [
            (r#"root ::= "a""#, 0),
            (r#"root ::= ("a" | "b")*"#, 1),
            (r#"root ::= (("a") ("b" ("c")))"#, 3),
            (r#"root ::= "((((" [(((] "\"((" [\]((]"#, 0),
            ("root ::= \"a\" # (((( a comment\nx ::= (\"b\")", 1),
            (r#"root ::= ")" (("a"))"#, 2),
            ("root ::= ))) ((\"a\"))", 2),
        ];
        for (grammar, want) in cases {
            assert_eq!(nesting(grammar), want, "{grammar}");
        }
    }

    #[test]
    fn a_deep_grammar_is_measured_without_recursion() {
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(30_000), ")".repeat(30_000));
        assert_eq!(nesting(&deep), 30_000);
    }
}
