//! How deeply a JSON schema nests once its local `$ref`s are expanded, measured before llguidance compiles it.
//!
//! Rules: llguidance compiles a schema recursively, a few KiB of stack per level and per `$ref` it follows, on the
//! thread that asks (a Python thread when a request is checked, the engine's worker when it runs). serde_json caps
//! the nesting of the text at 128, but a chain of references is flat text: a few thousand `$defs`, each referring
//! to the next, fit in the 256 KiB a schema may take and overflowed the stack, killing the process.
//! [`within`] refuses a schema deeper than [`MAX_SCHEMA_DEPTH`] levels, counting each array or object and each
//! `$ref` followed as one. A reference to a schema already being expanded (recursion: a tree, a linked list) adds
//! nothing: llguidance compiles each definition once. The walk stops as soon as the limit is passed, so its own
//! recursion stays within the limit too; each target's depth is computed once (memoised), so it is linear in the
//! schema's size. References it cannot resolve are left to llguidance to refuse.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// The deepest a schema may nest with its references expanded (serde_json's own limit for the text).
pub const MAX_SCHEMA_DEPTH: usize = 128;

/// Whether `schema` nests at most `limit` levels with its local references expanded.
pub fn within(schema: &Value, limit: usize) -> bool {
    let mut walk = Walk { root: schema, limit, memo: HashMap::new(), open: HashSet::new() };
    walk.depth(schema, 0).is_some()
}

struct Walk<'a> {
    root: &'a Value,
    limit: usize,
    /// The expanded depth of each reference target already measured (by its JSON pointer).
    memo: HashMap<&'a str, usize>,
    /// The targets being expanded on the current path.
    open: HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    /// The levels at and below `value`, which sits under `above` levels; None once the total passes the limit.
    fn depth(&mut self, value: &'a Value, above: usize) -> Option<usize> {
        let here = above + 1;
        let (children, reference): (Vec<&'a Value>, Option<&'a str>) = match value {
            Value::Array(items) => (items.iter().collect(), None),
            Value::Object(map) => (map.values().collect(), map.get("$ref").and_then(Value::as_str)),
            _ => return Some(0),
        };
        if here > self.limit {
            return None;
        }
        let mut below = 0;
        for child in children {
            below = below.max(self.depth(child, here)?);
        }
        if let Some(reference) = reference {
            below = below.max(self.target(reference, here)?);
        }
        Some(below + 1)
    }

    /// The levels of the schema `reference` names, followed from under `above` levels.
    fn target(&mut self, reference: &'a str, above: usize) -> Option<usize> {
        let Some(pointer) = reference.strip_prefix('#') else { return Some(0) };
        if self.open.contains(pointer) {
            return Some(0);
        }
        let depth = match self.memo.get(pointer) {
            Some(&depth) => depth,
            None => {
                let Some(target) = self.root.pointer(pointer) else { return Some(0) };
                self.open.insert(pointer);
                let depth = self.depth(target, above);
                self.open.remove(pointer);
                let depth = depth?;
                self.memo.insert(pointer, depth);
                depth
            }
        };
        (above + depth <= self.limit).then_some(depth)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `{"$ref": "#/$defs/a0", "$defs": {"a0": link(1), ..., "aN": {"type": "string"}}}`.
    fn chain(links: usize, link: impl Fn(Value) -> Value) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..links {
            defs.insert(format!("a{i}"), link(json!({"$ref": format!("#/$defs/a{}", i + 1)})));
        }
        defs.insert(format!("a{links}"), json!({"type": "string"}));
        json!({"$ref": "#/$defs/a0", "$defs": defs})
    }

    #[test]
    fn counts_levels_and_reference_hops() {
        assert!(within(&json!({"type": "string"}), 1));
        assert!(!within(&json!({"type": "string"}), 0));
        // root, $defs, a0, a1 (as a0's $ref): each object a level, each hop one more than the object it leaves.
        let two = chain(1, |r| r);
        assert!(within(&two, 4) && !within(&two, 3));
        let deep = chain(200, |r| json!({"type": "array", "items": r}));
        assert!(!within(&deep, MAX_SCHEMA_DEPTH));
        assert!(within(&chain(20, |r| json!({"type": "object", "properties": {"x": r}})), MAX_SCHEMA_DEPTH));
    }

    #[test]
    fn recursion_counts_once_and_unknown_references_are_left_alone() {
        let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}});
        assert!(within(&tree, 8));
        let mutual = json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"$ref": "#/$defs/a"}},
                            "$ref": "#/$defs/a"});
        assert!(within(&mutual, 16));
        assert!(within(&json!({"$ref": "https://example.com/s.json"}), 4));
        assert!(within(&json!({"$ref": "#/$defs/missing"}), 4));
    }

    #[test]
    fn a_long_chain_is_refused_without_deep_recursion() {
        // Thousands of links: the walk stops at the limit, so it needs no more stack than the limit.
        let long = chain(20_000, |r| json!({"anyOf": [r]}));
        let walked = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || within(&long, MAX_SCHEMA_DEPTH));
        assert!(!walked.unwrap().join().unwrap());
    }
}
