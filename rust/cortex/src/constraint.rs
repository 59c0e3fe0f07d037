//! Constrained decoding: what an answer must match (a JSON schema, any JSON object, or a forced tool call in the
//! model family's own syntax), compiled by llguidance into a token mask.
//!
//! Rules:
//! - The field's library does the matching: llguidance (the Rust crate llama.cpp itself can use) compiles JSON
//!   schemas and Lark grammars and computes each token's mask from a token trie. Nothing here matches text by hand;
//!   this module only writes the grammar for a request and checks that it compiles.
//! - A schema llguidance cannot enforce is refused when the request is made (`lenient` off), with llguidance's own
//!   message behind the field and path, never silently loosened.
//! - JSON is compact but readable (`", "`, `": "`) and its white space is fixed: a small model given free white space
//!   can fill its whole budget with new lines.
//! - The constraint covers the answer only. The pipeline decides when it starts: after the think block closes, so a
//!   thinking model thinks freely (`pipeline::Generation::in_thought`).
//! - Raw GBNF grammars (`Sampling::grammar`) stay with llama.cpp's own grammar sampler; they are not compiled here.
//!
//! Layering: references `config`, `error`, `schema_depth` (a schema's expanded depth, checked before llguidance
//! recurses through it) and `tools` (for the call syntax of each model family).

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use toktrie::{ApproximateTokEnv, TokEnv};

use crate::config::{Output, ResponseFormat, ToolChoice, ToolSpec};
use crate::error::CortexError;
use crate::schema_depth;
use crate::tools::ToolFormat;

/// How every constrained JSON value is written (llguidance's `x-guidance` options).
fn json_style() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ", "lenient": false})
}

/// Where a constrained answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    ResponseFormat,
    ToolChoice,
}

impl Source {
    fn field(self) -> &'static str {
        match self {
            Self::ResponseFormat => "response_format",
            Self::ToolChoice => "tools",
        }
    }

    /// Where in the request the grammar comes from.
    fn path(self) -> &'static str {
        match self {
            Self::ResponseFormat => "response_format.json_schema.schema",
            Self::ToolChoice => "tool_choice",
        }
    }
}

/// The grammar a request's answer must follow, or None when it is free. Forced tool calls win over a response
/// format (a call is the answer then).
pub fn grammar(output: &Output, format: ToolFormat) -> Result<Option<(TopLevelGrammar, Source)>, CortexError> {
    let forced = forced_tools(output);
    if !forced.is_empty() {
        let lark = call_grammar(&forced, format, output.parallel_tool_calls)?;
        return Ok(Some((TopLevelGrammar::from_lark(lark), Source::ToolChoice)));
    }
    let schema = match &output.format {
        ResponseFormat::Text => return Ok(None),
        ResponseFormat::JsonObject => json!({"type": "object"}),
        ResponseFormat::JsonSchema { schema, .. } => {
            parse_schema(schema, "response_format", "response_format.json_schema.schema")?
        }
    };
    Ok(Some((TopLevelGrammar::from_json_schema(styled(schema)), Source::ResponseFormat)))
}

/// Whether a request's answer is constrained ([`grammar`] gives `Some`), without building the grammar.
pub fn constrains(output: &Output) -> bool {
    !forced_tools(output).is_empty() || !matches!(output.format, ResponseFormat::Text)
}

/// The tools the answer must call (`tool_choice` required or naming one), if any.
fn forced_tools(output: &Output) -> Vec<&ToolSpec> {
    match &output.tool_choice {
        ToolChoice::Required => output.tools.iter().collect(),
        ToolChoice::Function(name) => output.tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::None => Vec::new(),
    }
}

/// Checks that every schema of `output` compiles (with a byte-level vocabulary: what llguidance refuses does not
/// depend on the model), so an unenforceable schema is an error of the request, not of its generation.
pub fn check(output: &Output) -> Result<(), CortexError> {
    // Each tool's schema on its own, so the error names the tool.
    for (i, tool) in output.tools.iter().enumerate() {
        let where_ = format!("tools[{i}].function.parameters");
        let schema = parse_schema(&tool.parameters, "tools", &where_)?;
        if schema.get("type").and_then(Value::as_str).is_some_and(|t| t != "object") {
            return Err(CortexError::invalid_output("tools", where_, "must be an object schema"));
        }
        compile_check(TopLevelGrammar::from_json_schema(styled(schema)))
            .map_err(|e| CortexError::invalid_output("tools", &where_, e))?;
    }
    if let Some((grammar, source)) = grammar(output, ToolFormat::Hermes)? {
        let where_ = source.path();
        compile_check(grammar).map_err(|e| CortexError::invalid_output(source.field(), where_, e))?;
    }
    Ok(())
}

fn compile_check(grammar: TopLevelGrammar) -> Result<(), String> {
    static BYTES: std::sync::OnceLock<Result<Compiler, String>> = std::sync::OnceLock::new();
    let compiler = BYTES.get_or_init(|| Compiler::new(ApproximateTokEnv::single_byte_env()).map_err(|e| e.to_string()));
    let compiler = compiler.as_ref().map_err(Clone::clone)?;
    compiler.matcher_or_message(grammar).map(drop)
}

fn parse_schema(text: &str, field: &'static str, where_: &str) -> Result<Value, CortexError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| CortexError::invalid_output(field, where_, format!("not JSON ({e})")))?;
    // llguidance recurses per level and per $ref followed: a long chain of references would overflow the stack.
    if !schema_depth::within(&value, schema_depth::MAX_SCHEMA_DEPTH) {
        let limit = schema_depth::MAX_SCHEMA_DEPTH;
        let what = format!("nests deeper than {limit} levels once its $refs are expanded; flatten it");
        return Err(CortexError::invalid_output(field, where_, what));
    }
    match value {
        Value::Object(_) => Ok(value),
        // JSON Schema allows `true` (anything); llguidance takes it too.
        Value::Bool(true) => Ok(json!({})),
        _ => Err(CortexError::invalid_output(field, where_, "a JSON schema must be an object")),
    }
}

/// `schema` with this module's JSON style (an `x-guidance` key the caller set wins).
fn styled(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(json_style);
    }
    schema
}

/// The schema of one call object: `{"name": <const>, "arguments": <the tool's parameters>}`, keys in that order.
fn call_schema(tool: &ToolSpec, arguments_key: &str) -> Result<Value, CortexError> {
    let params = parse_schema(&tool.parameters, "tools", &format!("tools[{:?}].function.parameters", tool.name))?;
    Ok(json!({
        "type": "object",
        "properties": {"name": {"const": tool.name}, arguments_key: params},
        "required": ["name", arguments_key],
        "additionalProperties": false,
    }))
}

/// One of `tools` called in `format`'s syntax; several calls when `parallel`. The JSON parts are `%json` values, so
/// llguidance enforces each tool's schema on its arguments.
fn call_grammar(tools: &[&ToolSpec], format: ToolFormat, parallel: bool) -> Result<String, CortexError> {
    let json_rule = |arguments_key: &str| -> Result<String, CortexError> {
        let variants = tools.iter().map(|t| call_schema(t, arguments_key)).collect::<Result<Vec<_>, _>>()?;
        let mut schema = if variants.len() == 1 {
            variants.into_iter().next().unwrap_or_default()
        } else {
            json!({"anyOf": variants})
        };
        if let Value::Object(map) = &mut schema {
            map.insert("x-guidance".into(), json_style());
        }
        Ok(format!("call: %json {schema}\n"))
    };
    let many = |one: &str, sep: &str| if parallel { format!("{one} ({sep} {one})*") } else { one.to_owned() };
    let lark = match format {
        ToolFormat::Hermes => {
            format!(
                "start: {}\ntagged: \"<tool_call>\\n\" call \"\\n</tool_call>\"\n{}",
                many("tagged", "\"\\n\""),
                json_rule("arguments")?
            )
        }
        ToolFormat::Llama3 => format!("start: call\n{}", json_rule("parameters")?),
        ToolFormat::Json => format!("start: call\n{}", json_rule("arguments")?),
        ToolFormat::Mistral => {
            format!("start: \"[TOOL_CALLS][\" {} \"]\"\n{}", many("call", "\", \""), json_rule("arguments")?)
        }
        ToolFormat::DeepSeek => {
            // `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`, per tool.
            let mut rules = String::new();
            let mut names = Vec::new();
            for (i, tool) in tools.iter().enumerate() {
                let params =
                    parse_schema(&tool.parameters, "tools", &format!("tools[{:?}].function.parameters", tool.name))?;
                let name = serde_json::to_string(&format!("function<｜tool▁sep｜>{}\n```json\n", tool.name))
                    .map_err(|e| CortexError::invalid_output("tools", "tools", e.to_string()))?;
                rules += &format!("call{i}: \"<｜tool▁call▁begin｜>\" {name} args{i} \"\\n```<｜tool▁call▁end｜>\"\n");
                rules += &format!("args{i}: %json {}\n", styled(params));
                names.push(format!("call{i}"));
            }
            rules += &format!("call: {}\n", names.join(" | "));
            format!("start: \"<｜tool▁calls▁begin｜>\" {} \"<｜tool▁calls▁end｜>\"\n{rules}", many("call", "\"\""))
        }
    };
    Ok(lark)
}

/// Compiles grammars into matchers for one vocabulary. Build one per model: the token trie takes a while.
#[derive(Clone)]
pub struct Compiler {
    factory: Arc<ParserFactory>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler").finish_non_exhaustive()
    }
}

impl Compiler {
    pub fn new(tok_env: TokEnv) -> Result<Self, CortexError> {
        let mut factory = ParserFactory::new_simple(&tok_env)
            .map_err(|e| CortexError::Engine(format!("the constraint engine failed to start: {e}")))?;
        factory.quiet();
        Ok(Self { factory: Arc::new(factory) })
    }

    /// A fresh matcher for `grammar`; an error names the request field at fault.
    pub fn matcher(&self, grammar: TopLevelGrammar, source: Source) -> Result<Matcher, CortexError> {
        self.matcher_or_message(grammar).map_err(|e| CortexError::invalid_output(source.field(), source.path(), e))
    }

    fn matcher_or_message(&self, grammar: TopLevelGrammar) -> Result<Matcher, String> {
        let parser = self.factory.create_parser(grammar).map_err(|e| first_line(&e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(first_line(&e)),
            None => Ok(matcher),
        }
    }
}

/// llguidance's verbose errors append the grammar; the first line says what is wrong.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, parameters: Value) -> ToolSpec {
        ToolSpec { name: name.into(), description: None, parameters: parameters.to_string() }
    }

    fn weather() -> ToolSpec {
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": false}),
        )
    }

    /// Whether the byte-level matcher for `output` accepts `text` as a whole answer.
    fn accepts(output: &Output, format: ToolFormat, text: &str) -> bool {
        let env = ApproximateTokEnv::single_byte_env();
        let compiler = Compiler::new(env.clone()).unwrap();
        let (grammar, source) = grammar(output, format).unwrap().unwrap();
        let mut matcher = compiler.matcher(grammar, source).unwrap();
        let tokens = env.tokenize_bytes(text.as_bytes());
        matcher.try_consume_tokens(&tokens).unwrap_or(0) == tokens.len() && matcher.is_accepting().unwrap_or(false)
    }

    fn forced(tools: Vec<ToolSpec>, choice: ToolChoice, parallel: bool) -> Output {
        Output { tools, tool_choice: choice, parallel_tool_calls: parallel, format: ResponseFormat::Text }
    }

    #[test]
    fn a_schema_is_enforced() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}, "tags": {"type": "array",
            "items": {"enum": ["a", "b"]}}}, "required": ["n", "tags"], "additionalProperties": false});
        let output = Output {
            format: ResponseFormat::JsonSchema { name: "x".into(), schema: schema.to_string(), strict: true },
            ..Output::default()
        };
        assert!(accepts(&output, ToolFormat::Hermes, r#"{"n": 3, "tags": ["a", "b"]}"#));
        assert!(!accepts(&output, ToolFormat::Hermes, r#"{"n": "3", "tags": []}"#));
        assert!(!accepts(&output, ToolFormat::Hermes, r#"{"n": 3, "tags": ["c"]}"#));
        assert!(!accepts(&output, ToolFormat::Hermes, r#"{"n": 3}"#));
    }

    #[test]
    fn json_object_takes_any_object_only() {
        let output = Output { format: ResponseFormat::JsonObject, ..Output::default() };
        assert!(accepts(&output, ToolFormat::Hermes, r#"{"a": [1, {"b": null}]}"#));
        assert!(!accepts(&output, ToolFormat::Hermes, "[1]"));
        assert!(!accepts(&output, ToolFormat::Hermes, "hello"));
    }

    #[test]
    fn forced_calls_follow_each_family() {
        let one = forced(vec![weather()], ToolChoice::Required, false);
        let call = r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}"#;
        assert!(accepts(&one, ToolFormat::Hermes, &format!("<tool_call>\n{call}\n</tool_call>")));
        assert!(!accepts(
            &one,
            ToolFormat::Hermes,
            &format!("<tool_call>\n{call}\n</tool_call>\n<tool_call>\n{call}\n</tool_call>")
        ));
        assert!(!accepts(
            &one,
            ToolFormat::Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 1, \"unit\": \"c\"}}\n</tool_call>"
        ));
        assert!(accepts(&one, ToolFormat::Json, call));
        let llama = r#"{"name": "get_weather", "parameters": {"city": "Paris", "unit": "f"}}"#;
        assert!(accepts(&one, ToolFormat::Llama3, llama));
        assert!(accepts(&one, ToolFormat::Mistral, &format!("[TOOL_CALLS][{call}]")));
        let deepseek = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n\
                        {\"city\": \"Oslo\", \"unit\": \"c\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        assert!(accepts(&one, ToolFormat::DeepSeek, deepseek));
        let parallel = forced(vec![weather()], ToolChoice::Required, true);
        assert!(accepts(
            &parallel,
            ToolFormat::Hermes,
            &format!("<tool_call>\n{call}\n</tool_call>\n<tool_call>\n{call}\n</tool_call>")
        ));
    }

    #[test]
    fn a_named_function_is_the_only_one_allowed() {
        let other = tool("other", json!({"type": "object", "properties": {}}));
        let output = forced(vec![weather(), other], ToolChoice::Function("other".into()), false);
        assert!(accepts(&output, ToolFormat::Json, r#"{"name": "other", "arguments": {}}"#));
        assert!(!accepts(
            &output,
            ToolFormat::Json,
            r#"{"name": "get_weather", "arguments": {"city": "P", "unit": "c"}}"#
        ));
    }

    #[test]
    fn auto_and_none_leave_the_model_free() {
        for choice in [ToolChoice::Auto, ToolChoice::None] {
            assert!(grammar(&forced(vec![weather()], choice, true), ToolFormat::Hermes).unwrap().is_none());
        }
    }

    #[test]
    fn bad_schemas_are_refused_with_their_path() {
        let cases = [
            (forced(vec![ToolSpec { parameters: "{not json".into(), ..weather() }], ToolChoice::Auto, true), "tools", "tools[0].function.parameters: not JSON"),
            (forced(vec![tool("f", json!({"type": "string"}))], ToolChoice::Auto, true), "tools", "tools[0].function.parameters: must be an object schema"),
            (forced(vec![tool("f", json!({"type": "object", "properties": {"x": {"type": "wat"}}}))], ToolChoice::Auto, true), "tools", "tools[0].function.parameters: "),
            (
                Output { format: ResponseFormat::JsonSchema { name: "x".into(), schema: "[1]".into(), strict: false }, ..Output::default() },
                "response_format",
                "json_schema.schema: a JSON schema must be an object",
            ),
            (
                Output {
                    format: ResponseFormat::JsonSchema { name: "x".into(), schema: json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["a"]}).to_string(), strict: true },
                    ..Output::default()
                },
                "response_format",
                "response_format.json_schema.schema: ",
            ),
        ];
        for (output, field, message) in cases {
            match check(&output) {
                Err(err @ CortexError::InvalidOutput { field: f, .. }) => {
                    let text = err.to_string();
                    assert_eq!(f, field, "{text}");
                    assert!(text.contains(message), "{text:?} lacks {message:?}");
                }
                other => panic!("{message}: expected an error, got {other:?}"),
            }
        }
    }
}
