//! Stop strings that may arrive in pieces.
//!
//! Rules: text that could still become a stop string is held back, never emitted; on a match, the text before it is
//! emitted and the match itself is not; text held at the end without a match is flushed.

/// The length in bytes of the longest suffix of `text` that is a proper prefix of `pattern`.
pub(crate) fn partial_suffix_len(text: &str, pattern: &str) -> usize {
    let longest = text.len().min(pattern.len().saturating_sub(1));
    (1..=longest)
        .rev()
        .find(|&k| {
            pattern.is_char_boundary(k) && text.is_char_boundary(text.len() - k) && text.ends_with(&pattern[..k])
        })
        .unwrap_or(0)
}

/// Matches stop strings across pushes.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    /// The stop string that matched, by index.
    matched: Option<usize>,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops, held: String::new(), matched: None }
    }

    /// Appends to `out` what can safely be emitted. Returns true when a stop string matched; the generation should
    /// end and nothing after the match is emitted.
    pub fn push(&mut self, text: &str, out: &mut String) -> bool {
        if self.stops.is_empty() {
            out.push_str(text);
            return false;
        }
        self.held.push_str(text);
        // The earliest match; of two at one place, the first listed.
        let first =
            self.stops.iter().enumerate().filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i))).min();
        if let Some((at, index)) = first {
            out.push_str(&self.held[..at]);
            self.held.clear();
            self.matched = Some(index);
            return true;
        }
        let hold = self.stops.iter().map(|s| partial_suffix_len(&self.held, s)).max().unwrap_or(0);
        let emit = self.held.len() - hold;
        out.push_str(&self.held[..emit]);
        self.held.drain(..emit);
        false
    }

    /// The stop string that ended the text, once one matched.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// True while text is held back (it may be the start of a stop string).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Emits whatever is still held (it never became a stop string).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.held);
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matched_stop_string_is_named_the_earliest_first() {
        let mut m = StopMatcher::new(vec!["END".into(), "ST".into(), "STOP".into()]);
        let mut out = String::new();
        assert!(!m.push("go S", &mut out) && m.matched().is_none());
        assert!(m.push("TOP then END", &mut out));
        assert_eq!((out.as_str(), m.matched()), ("go ", Some("ST")));
    }

    /// Feeds `pieces`, returns (emitted text, matched).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            if m.push(p, &mut out) {
                return (out, true);
            }
        }
        m.finish(&mut out);
        (out, false)
    }

    #[test]
    fn partial_suffix() {
        assert_eq!(partial_suffix_len("abc<th", "<think>"), 3);
        assert_eq!(partial_suffix_len("abc", "<think>"), 0);
        assert_eq!(partial_suffix_len("<think>", "<think>"), 0, "a whole match is not a partial one");
        assert_eq!(partial_suffix_len("x\u{e9}", "\u{e9}t"), 2);
    }

    #[test]
    fn a_stop_string_split_at_every_point_is_found_and_not_emitted() {
        let text = "Hello END world";
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let got = run(&["END"], &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(got, ("Hello ".to_string(), true), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn a_partial_match_is_held_and_then_released() {
        let mut m = StopMatcher::new(vec!["</s>".into()]);
        let mut out = String::new();
        assert!(!m.push("a </", &mut out));
        assert_eq!(out, "a ");
        assert!(!m.push("b", &mut out));
        assert_eq!(out, "a </b");
    }

    #[test]
    fn earliest_of_several_stops_wins_and_a_near_miss_is_flushed() {
        assert_eq!(run(&["world", "lo"], &["hel", "lo world"]), ("hel".to_string(), true));
        assert_eq!(run(&["STOP"], &["ends with ST"]), ("ends with ST".to_string(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".to_string(), false));
    }
}
