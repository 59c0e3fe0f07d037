//! Table-driven tests of every family, at every split point, and property tests over random splits and calls.

use super::*;
use crate::think::split_points::{boundaries, split};
use proptest::prelude::*;
use serde_json::Value;

use ToolFormat::{DeepSeek, Hermes, Json, Llama3, Mistral};

#[derive(Debug, Clone, PartialEq)]
enum E {
    Text(String),
    Start(u32, String, String),
    /// Arguments text, re-serialised through `serde_json` when it parses (compares by JSON value, not spelling).
    Args(u32, String),
    Stop(u32),
}

fn canonical(args: &str) -> String {
    serde_json::from_str::<Value>(args).map_or_else(|_| args.to_owned(), |v| v.to_string())
}

/// Parses `pieces`, checks the event protocol, merges adjacent deltas of one kind.
fn parse(format: ToolFormat, pieces: &[&str]) -> Vec<E> {
    let mut parser = ToolCallParser::new(format, "t");
    let mut raw = Vec::new();
    for p in pieces {
        parser.feed(p, &mut raw);
    }
    parser.finish(&mut raw);
    let mut merged: Vec<E> = Vec::new();
    let mut open: Option<u32> = None;
    let mut starts = 0;
    for ev in raw {
        let e = match ev {
            InferenceEvent::Content(t) => {
                assert!(!t.is_empty(), "empty content delta");
                E::Text(t)
            }
            InferenceEvent::ToolCall(ToolCallEvent::Start { index, id, name }) => {
                assert_eq!((open, index), (None, starts), "a call starts while another is open, or out of order");
                open = Some(index);
                starts += 1;
                E::Start(index, id, name)
            }
            InferenceEvent::ToolCall(ToolCallEvent::Arguments { index, delta }) => {
                assert!(!delta.is_empty(), "empty arguments delta");
                assert_eq!(open, Some(index), "arguments outside their call");
                E::Args(index, delta)
            }
            InferenceEvent::ToolCall(ToolCallEvent::Stop { index }) => {
                assert_eq!(open.take(), Some(index), "stop of a call that is not open");
                E::Stop(index)
            }
            other => panic!("unexpected {other:?}"),
        };
        match (merged.last_mut(), e) {
            (Some(E::Text(a)), E::Text(b)) => a.push_str(&b),
            (Some(E::Args(i, a)), E::Args(j, b)) if *i == j => a.push_str(&b),
            (_, e) => merged.push(e),
        }
    }
    assert_eq!(open, None, "a call left open");
    assert_eq!(parser.calls(), starts);
    merged
        .into_iter()
        .map(|e| match e {
            E::Args(i, a) => E::Args(i, canonical(&a)),
            e => e,
        })
        .collect()
}

fn text(s: &str) -> Vec<E> {
    vec![E::Text(s.into())]
}

/// A whole call with a generated id.
fn call(index: u32, name: &str, args: &str) -> Vec<E> {
    call_id(index, &format!("call_t_{index}"), name, args)
}

fn call_id(index: u32, id: &str, name: &str, args: &str) -> Vec<E> {
    vec![E::Start(index, id.into(), name.into()), E::Args(index, canonical(args)), E::Stop(index)]
}

fn seq(parts: Vec<Vec<E>>) -> Vec<E> {
    parts.concat()
}

/// Arguments with nesting, and strings holding `}`, `"`, `\"`, `\\` and non-ASCII text.
macro_rules! nested {
    () => {
        r#"{"code": "if (a) { b(\"}\"); }", "list": [1, {"x": [2, {}]}], "u": "é中🦀 \u00e9\\", "e": ""}"#
    };
}
const NESTED: &str = nested!();

/// (format, input, expected merged events)
fn cases() -> Vec<(ToolFormat, &'static str, Vec<E>)> {
    vec![
        // Hermes 2 Pro / Qwen2.5 / Qwen3: the chat templates' tool instructions ("For each function call, return a
        // json object with function name and arguments within <tool_call></tool_call> XML tags") and llama.cpp
        // `common_chat_parse_hermes_2_pro`.
        (
            Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            call(0, "get_weather", r#"{"city": "Paris"}"#),
        ),
        (
            Hermes,
            "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \
             \"arguments\": {\"n\": 2}}\n</tool_call>",
            seq(vec![call(0, "a", "{}"), call(1, "b", r#"{"n": 2}"#)]),
        ),
        (
            Hermes,
            "Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": 1}}\n</tool_call>",
            seq(vec![text("Let me check."), call(0, "f", r#"{"q": 1}"#)]),
        ),
        (
            Hermes,
            "A <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call> B <tool_call>{\"name\": \"g\", \
             \"arguments\": {}}</tool_call>\n C",
            seq(vec![text("A"), call(0, "f", "{}"), text("B"), call(1, "g", "{}"), text("C")]),
        ),
        (
            Hermes,
            concat!(r#"<tool_call>{"name": "run", "arguments": "#, nested!(), r#"}</tool_call>"#),
            call(0, "run", NESTED),
        ),
        (
            Hermes,
            r#"<tool_call>{"arguments": {"a": [1, "}"]}, "name": "f"}</tool_call>"#,
            call(0, "f", r#"{"a": [1, "}"]}"#),
        ),
        (Hermes, "<tool_call>not json</tool_call>", text("<tool_call>not json</tool_call>")),
        (Hermes, "See:\n<tool_call>{\"foo\": 1}</tool_call>", text("See:\n<tool_call>{\"foo\": 1}</tool_call>")),
        (
            Hermes,
            r#"<tool_call>{"name": "f", "arguments": "{\"a\": \"}\"}"}</tool_call>"#,
            call(0, "f", r#"{"a": "}"}"#),
        ),
        (Hermes, r#"<tool_call>{"name": "f"}</tool_call>"#, call(0, "f", "{}")),
        (
            Hermes,
            r#"<tool_call>{"name": "f", "arguments": {"a": 1, "b": "x"#,
            vec![E::Start(0, "call_t_0".into(), "f".into()), E::Args(0, r#"{"a": 1, "b": "x"#.into()), E::Stop(0)],
        ),
        (Hermes, r#"<tool_call>{"arguments": {"a": 1}"#, text(r#"<tool_call>{"arguments": {"a": 1}"#)),
        (Hermes, "a < b <tool", text("a < b <tool")),
        (Hermes, "plain answer\n", text("plain answer\n")),
        // Llama 3.1–3.3: Meta's prompt format docs and the models' templates ("Respond in the format {\"name\":
        // function name, \"parameters\": dictionary of argument name and its value}"), `<|python_tag|>` of 3.1;
        // llama.cpp `common_chat_parse_llama_3_1`.
        (
            Llama3,
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
            call(0, "get_weather", r#"{"city": "Paris"}"#),
        ),
        (Llama3, "  \n{\"type\": \"function\", \"name\": \"f\", \"parameters\": {}}", call(0, "f", "{}")),
        (Llama3, r#"<|python_tag|>{"name": "f", "parameters": {"a": 1}}"#, call(0, "f", r#"{"a": 1}"#)),
        (
            Llama3,
            r#"<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": "y"}}"#,
            seq(vec![call(0, "a", "{}"), call(1, "b", r#"{"x": "y"}"#)]),
        ),
        (Llama3, r#"Sure.<|python_tag|>{"name": "f", "parameters": {}}"#, seq(vec![text("Sure."), call(0, "f", "{}")])),
        (Llama3, r#"Use {"name": "f"} like this"#, text(r#"Use {"name": "f"} like this"#)),
        (Llama3, concat!(r#"{"name": "run", "arguments": "#, nested!(), r#"}"#), call(0, "run", NESTED)),
        (Llama3, r#"{"parameters": {"a": "{"}, "name": "f"}"#, call(0, "f", r#"{"a": "{"}"#)),
        (Llama3, "{not json}", text("{not json}")),
        (Llama3, r#" {"answer": 42}"#, text(r#" {"answer": 42}"#)),
        (
            Llama3,
            r#"<|python_tag|>brave_search.call(query="x")"#,
            text(r#"<|python_tag|>brave_search.call(query="x")"#),
        ),
        (Llama3, "{\"name\": \"f\", \"parameters\": {}}\nDone.", seq(vec![call(0, "f", "{}"), text("Done.")])),
        // Mistral Nemo / Small (v3 tokenizer): mistral-common and the Nemo template (`[TOOL_CALLS]` + a JSON list
        // with 9-character ids); llama.cpp `common_chat_parse_mistral_nemo`. Newer (v11+, Mistral Small 3.2,
        // Magistral, Devstral): `[TOOL_CALLS]name[ARGS]{..}`, `[CALL_ID]` in between on some.
        (
            Mistral,
            r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123456"}]"#,
            call_id(0, "abc123456", "get_weather", r#"{"city": "Paris"}"#),
        ),
        (
            Mistral,
            concat!(
                r#"[TOOL_CALLS][{"name": "a", "arguments": {}, "id": "aaaaaaaaa"}, "#,
                r#"{"name": "b", "arguments": {"x": 1}, "id": "bbbbbbbbb"}]"#
            ),
            seq(vec![call_id(0, "aaaaaaaaa", "a", "{}"), call_id(1, "bbbbbbbbb", "b", r#"{"x": 1}"#)]),
        ),
        (
            Mistral,
            "Checking.\n[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}, \"id\": \"ccccccccc\"}]",
            seq(vec![text("Checking."), call_id(0, "ccccccccc", "f", "{}")]),
        ),
        (Mistral, concat!(r#"[TOOL_CALLS][{"name": "run", "arguments": "#, nested!(), r#"}]"#), call(0, "run", NESTED)),
        (
            Mistral,
            r#"[TOOL_CALLS][{"id": "x12345678", "arguments": {"a": "]"}, "name": "f"}]"#,
            call_id(0, "x12345678", "f", r#"{"a": "]"}"#),
        ),
        (Mistral, r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}"#, call(0, "get_weather", r#"{"city": "Paris"}"#)),
        (
            Mistral,
            r#"[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b[ARGS]{"x": [1, "]"]}"#,
            seq(vec![call(0, "a", "{}"), call(1, "b", r#"{"x": [1, "]"]}"#)]),
        ),
        (Mistral, r#"[TOOL_CALLS]f[CALL_ID]abc123456[ARGS]{"a": 1}"#, call_id(0, "abc123456", "f", r#"{"a": 1}"#)),
        (Mistral, "[TOOL_CALLS][not json]", text("[TOOL_CALLS][not json]")),
        (Mistral, "[TOOL_CALLS]no args here", text("[TOOL_CALLS]no args here")),
        (Mistral, "[TOOL_CALLS]f[AR", text("[TOOL_CALLS]f[AR")),
        // DeepSeek R1 (and V3-0324): the tokenizer_config.json chat template's tool-call rendering; llama.cpp
        // `common_chat_parse_deepseek_r1`. V3.1: its template, llama.cpp `common_chat_parse_deepseek_v3_1`.
        (
            DeepSeek,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \
             \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            call(0, "get_weather", r#"{"city": "Paris"}"#),
        ),
        (
            DeepSeek,
            "Let me look.\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>a\n```json\n{}\n```\
             <｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>b\n```json\n{\"x\": \"`\"}\n```\
             <｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            seq(vec![text("Let me look."), call(0, "a", "{}"), call(1, "b", r#"{"x": "`"}"#)]),
        ),
        (
            DeepSeek,
            concat!(
                "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>run\n```json\n",
                nested!(),
                "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
            ),
            call(0, "run", NESTED),
        ),
        (
            DeepSeek,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}\
             <｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            call(0, "get_weather", r#"{"city": "Paris"}"#),
        ),
        (DeepSeek, "<｜tool▁calls▁begin｜>oops", text("<｜tool▁calls▁begin｜>oops")),
        (
            DeepSeek,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>bad name\n{}",
            text("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>bad name\n{}"),
        ),
        // Plain JSON: llama.cpp's generic format (`common_chat_parse_generic`: `tool_call` / `tool_calls`).
        (Json, r#"{"name": "f", "arguments": {"a": 1}}"#, call(0, "f", r#"{"a": 1}"#)),
        (
            Json,
            r#"[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]"#,
            seq(vec![call(0, "a", "{}"), call(1, "b", r#"{"x": 1}"#)]),
        ),
        (
            Json,
            r#"{"tool_calls": [{"name": "a", "arguments": {}}, {"arguments": {"y": "}"}, "name": "b"}]}"#,
            seq(vec![call(0, "a", "{}"), call(1, "b", r#"{"y": "}"}"#)]),
        ),
        (Json, r#"{"tool_call": {"name": "f", "arguments": {"z": null}}}"#, call(0, "f", r#"{"z": null}"#)),
        (Json, concat!(r#"{"name": "run", "arguments": "#, nested!(), r#"}"#), call(0, "run", NESTED)),
        (Json, r#"Hello {"name": "f"}"#, text(r#"Hello {"name": "f"}"#)),
        (Json, "[1, 2]", text("[1, 2]")),
    ]
}

#[test]
fn table_unsplit() {
    for (format, input, want) in cases() {
        assert_eq!(parse(format, &[input]), want, "{format:?} {input:?}");
    }
}

#[test]
fn table_at_every_split_point() {
    for (format, input, want) in cases() {
        let cuts = boundaries(input);
        for &i in &cuts {
            for &j in cuts.iter().filter(|&&j| j >= i) {
                let pieces = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(parse(format, &pieces), want, "{format:?} {input:?} split at {i},{j}");
            }
        }
    }
}

#[test]
fn table_one_character_at_a_time() {
    for (format, input, want) in cases() {
        let chars: Vec<String> = input.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(parse(format, &pieces), want, "{format:?} {input:?}");
    }
}

#[test]
fn start_goes_out_with_the_name_and_arguments_stream() {
    let mut parser = ToolCallParser::new(Hermes, "r");
    let mut out = Vec::new();
    parser.feed("Hi <tool_ca", &mut out);
    assert_eq!(out, vec![InferenceEvent::Content("Hi".into())]);
    out.clear();
    parser.feed("ll>{\"name\": \"f\", \"arguments\": {\"a\": \"x", &mut out);
    let start = ToolCallEvent::Start { index: 0, id: "call_r_0".into(), name: "f".into() };
    let args = ToolCallEvent::Arguments { index: 0, delta: "{\"a\": \"x".into() };
    assert_eq!(out, vec![InferenceEvent::ToolCall(start), InferenceEvent::ToolCall(args)]);
    assert_eq!(parser.calls(), 1);
}

#[test]
fn a_mistral_json_call_waits_for_its_id() {
    let mut parser = ToolCallParser::new(Mistral, "r");
    let mut out = Vec::new();
    parser.feed(r#"[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "#, &mut out);
    assert_eq!(out, vec![]);
    parser.feed(r#""id": "abc123456"}]"#, &mut out);
    assert_eq!(
        out[0],
        InferenceEvent::ToolCall(ToolCallEvent::Start { index: 0, id: "abc123456".into(), name: "f".into() })
    );
}

#[test]
fn detect_finds_each_family_by_its_template_markers() {
    let cases = [
        // Qwen2.5 / Qwen3 / Hermes 3 (ChatML, tools in <tools>, calls in <tool_call>).
        ("{{- '<tool_call>\\n{\"name\": \"' }}{{ tool_call.name }}", Hermes),
        // Llama 3.1: builtin tools behind <|python_tag|>, results as ipython.
        ("{{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}", Llama3),
        // Llama 3.2 / 3.3: JSON calls with "parameters", tool results under the ipython header.
        (
            "<|start_header_id|>ipython<|end_header_id|>\n{{- '{\"name\": \"' + tc.name + '\", \"parameters\": ' }}",
            Llama3,
        ),
        // Mistral Nemo / Small.
        ("{{- \"[TOOL_CALLS][\" }}{%- for tool_call in message.tool_calls %}", Mistral),
        // DeepSeek R1 / V3.
        (
            "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'}}",
            DeepSeek,
        ),
        // ChatML without tools, and nothing at all.
        ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}", Hermes),
        ("", Hermes),
    ];
    for (source, want) in cases {
        assert_eq!(ToolFormat::detect(source), want, "{source:?}");
    }
}

fn fragment(format: ToolFormat) -> impl Strategy<Value = &'static str> {
    let markers: &[&'static str] = match format {
        Hermes => &["<tool_call>", "</tool_call>", "<tool", "</", "<"],
        Llama3 => &["<|python_tag|>", "<|python", ";", "<"],
        Mistral => &["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[TOOL", "[", "]", "x1"],
        DeepSeek => &[DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_SEP, DS_CALL_END, DS_CALLS_END, "function", "```json", "```"],
        Json => &["[", "]", "\"tool_calls\": "],
    };
    let common = [
        "{",
        "}",
        "\"name\": \"f\"",
        "\"arguments\": ",
        "\"parameters\": ",
        "\"id\": \"i\"",
        "{\"a\": [1, \"}\"]}",
        ", ",
        ":",
        "\"",
        "\\\"",
        "\\",
        " ",
        "\n",
        "é",
        "🦀",
        "ab",
        "null",
    ];
    prop::sample::select([markers, &common[..]].concat())
}

fn any_format() -> impl Strategy<Value = ToolFormat> {
    prop::sample::select(vec![Hermes, Llama3, Mistral, DeepSeek, Json])
}

/// A JSON value with nesting and strings full of JSON syntax.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z{}\\[\\]\"\\\\:, é🦀]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"}]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Renders calls the way `format` writes them; the expected events.
fn render(format: ToolFormat, calls: &[(String, Value)], pretty: bool) -> (String, Vec<E>) {
    let dump = |v: &Value| if pretty { serde_json::to_string_pretty(v).unwrap() } else { v.to_string() };
    let mut want = vec![E::Text("Sure:".into())];
    let mut s = String::from("Sure:\n");
    let name_args = |n: &str, a: &Value, key: &str| format!("{{\"name\": \"{n}\", \"{key}\": {}}}", dump(a));
    match format {
        Hermes => {
            for (n, a) in calls {
                s += &format!("<tool_call>\n{}\n</tool_call>\n", name_args(n, a, "arguments"));
            }
        }
        Llama3 => {
            s = String::from("<|python_tag|>");
            want.clear();
            let all: Vec<String> = calls.iter().map(|(n, a)| name_args(n, a, "parameters")).collect();
            s += &all.join("; ");
        }
        Mistral => {
            for (n, a) in calls {
                s += &format!("[TOOL_CALLS]{n}[ARGS]{}", dump(a));
            }
        }
        DeepSeek => {
            s += DS_CALLS_BEGIN;
            for (n, a) in calls {
                s += &format!("{DS_CALL_BEGIN}function{DS_SEP}{n}\n```json\n{}\n```{DS_CALL_END}", dump(a));
            }
            s += DS_CALLS_END;
        }
        Json => {
            want.clear();
            let all: Vec<String> = calls.iter().map(|(n, a)| name_args(n, a, "arguments")).collect();
            s = format!("{{\"tool_calls\": [{}]}}", all.join(", "));
        }
    }
    for (i, (n, a)) in calls.iter().enumerate() {
        want.extend(call(i as u32, n, &a.to_string()));
    }
    (s, want)
}

proptest! {
    #[test]
    fn any_split_gives_the_same_events(
        (format, parts) in any_format().prop_flat_map(|f| (Just(f), prop::collection::vec(fragment(f), 0..24))),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let input: String = parts.concat();
        prop_assert_eq!(parse(format, &split(&input, &cuts)), parse(format, &[input.as_str()]));
    }

    #[test]
    fn rendered_calls_come_back_whole_at_any_split(
        format in any_format(),
        calls in prop::collection::vec(("[a-z_]{1,8}", json_args()), 1..4),
        pretty in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let (input, want) = render(format, &calls, pretty);
        prop_assert_eq!(parse(format, &split(&input, &cuts)), want);
    }
}
