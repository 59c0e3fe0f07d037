//! Inference configuration: behaviour (what the caller sees) and sampling (how tokens are chosen).
//!
//! Rules: defaults follow llama.cpp's so results compare with llama-server and llama-cpp-python; every field is
//! checked by `validate()` and an out-of-range value names the field, the value and the accepted range.

use crate::error::CortexError;
use crate::gbnf;

/// Most stop strings one request may carry.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Longest grammar, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 64 * 1024;
/// Most token biases one request may carry.
pub const MAX_LOGIT_BIAS: usize = 1024;
/// The largest bias in either direction (OpenAI's range): -100 bans a token in practice, +100 all but forces it.
pub const MAX_BIAS: f32 = 100.0;
/// Most alternatives a token's log-probability may list (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// What the caller sees of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Emit thought events. When false the output is still parsed and thoughts are dropped.
    pub show_thinking: bool,
    /// Most tokens to generate (reasoning included); `None` runs until the model stops or the context is full.
    pub max_tokens: Option<u32>,
    /// Strings that end the generation; the matched text is not emitted.
    pub stop: Vec<String>,
    /// Context window in tokens; `None` lets the engine choose.
    pub context_size: Option<u32>,
    /// Report each answer token's log-probability and its `k` most likely alternatives (`k` in 0..=20, as OpenAI's
    /// `top_logprobs`); `None`: off. See [`crate::event::TokenLogprob`] for what is reported.
    pub logprobs: Option<u32>,
    /// What a chat request whose conversation does not fit the context gets.
    pub context_overflow: ContextOverflow,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            show_thinking: true,
            max_tokens: None,
            stop: Vec::new(),
            context_size: None,
            logprobs: None,
            context_overflow: ContextOverflow::Error,
        }
    }
}

/// What a chat request gets when its prompt does not fit the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextOverflow {
    /// `CortexError::ContextOverflow` (a server answers 400 `context_length_exceeded`).
    #[default]
    Error,
    /// The oldest turns go (a user message and what answered it), system messages and the last turn stay, until
    /// the prompt fits; the answer's usage counts the messages dropped. Still too long: the error.
    DropOldestTurns,
    /// llama.cpp's context shift ([`crate::shift`]): a full cache drops the older half of what follows the system
    /// prompt and generation goes on; an overlong prompt loses blocks from its middle. The answer's usage counts the
    /// tokens shifted out. Raw prompts too. A model whose cache cannot shift gets the error.
    Shift,
}

impl ContextOverflow {
    pub const NAMES: [&'static str; 3] = ["error", "drop_oldest_turns", "shift"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "error" => Some(Self::Error),
            "drop_oldest_turns" => Some(Self::DropOldestTurns),
            "shift" => Some(Self::Shift),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::DropOldestTurns => "drop_oldest_turns",
            Self::Shift => "shift",
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Makes sampled output reproducible; `None` picks a random seed.
    pub seed: Option<u32>,
    /// A GBNF grammar (llama.cpp's format, root rule `root`) the output must follow.
    pub grammar: Option<String>,
    /// Added to a token's logit before sampling: (token id, bias in [-100, 100]), each id once. The bias is added
    /// as given, as llama-server does: -100 puts a token 100 logits under the others, a ban in practice (its
    /// probability is below f32's smallest normal), without the `-inf` that would leave nothing to pick when a
    /// grammar allows only that token. Ids are checked against the model's vocabulary when a request is admitted
    /// ([`Sampling::check_vocab`]).
    pub logit_bias: Vec<(i32, f32)>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            grammar: None,
            logit_bias: Vec::new(),
        }
    }
}

/// Behaviour and sampling of one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferenceConfig {
    pub behavior: Behavior,
    pub sampling: Sampling,
    pub output: Output,
    pub reasoning: Reasoning,
}

impl InferenceConfig {
    pub fn validate(&self) -> Result<(), CortexError> {
        self.behavior.validate()?;
        self.sampling.validate()?;
        self.output.validate()?;
        self.reasoning.validate()
    }
}

/// Most tools one request may declare.
pub const MAX_TOOLS: usize = 128;
/// Largest JSON schema (a tool's parameters or a response format), in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    /// `^[a-zA-Z0-9_-]{1,64}$`, as OpenAI requires.
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema of the arguments, in text form (an object schema).
    pub parameters: String,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides: text, or calls.
    #[default]
    Auto,
    /// No call: the tools are not shown to the model.
    None,
    /// At least one call, to any of the tools.
    Required,
    /// A call to this function.
    Function(String),
}

/// The shape the answer (after any thought) must take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema (text form).
    JsonSchema { name: String, schema: String, strict: bool },
}

/// Tools and the answer's shape: what the answer must look like, enforced while sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// More than one call in one answer.
    pub parallel_tool_calls: bool,
    pub format: ResponseFormat,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            format: ResponseFormat::Text,
        }
    }
}

impl Output {
    /// The tools the model is shown: none under `tool_choice = none`.
    pub fn offered_tools(&self) -> &[ToolSpec] {
        if self.tool_choice == ToolChoice::None { &[] } else { &self.tools }
    }

    pub fn validate(&self) -> Result<(), CortexError> {
        if self.tools.len() > MAX_TOOLS {
            return Err(CortexError::invalid("tools", format!("{} tools", self.tools.len()), "at most 128 tools"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let valid_name = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid_name {
                return Err(CortexError::invalid_output(
                    "tools",
                    format!("tools[{i}].function.name"),
                    format!("must be 1 to 64 letters, digits, '_' or '-' (got {:?})", tool.name),
                ));
            }
            if !seen.insert(tool.name.as_str()) {
                return Err(CortexError::invalid_output(
                    "tools",
                    format!("tools[{i}].function.name"),
                    format!("{:?} is already the name of another tool; function names must be unique", tool.name),
                ));
            }
            if tool.parameters.len() > MAX_SCHEMA_BYTES {
                return Err(CortexError::invalid_output(
                    "tools",
                    format!("tools[{i}].function.parameters"),
                    format!("{} bytes: a schema is at most 256 KiB", tool.parameters.len()),
                ));
            }
        }
        match &self.tool_choice {
            ToolChoice::Required if self.tools.is_empty() => {
                return Err(CortexError::invalid_output(
                    "tool_choice",
                    "tool_choice",
                    "\"required\" needs at least one tool in tools",
                ));
            }
            ToolChoice::Function(name) if !self.tools.iter().any(|t| &t.name == name) => {
                return Err(CortexError::invalid_output(
                    "tool_choice",
                    "tool_choice.function.name",
                    format!("{name:?} is not a function in tools"),
                ));
            }
            _ => {}
        }
        if let ResponseFormat::JsonSchema { schema, .. } = &self.format
            && schema.len() > MAX_SCHEMA_BYTES
        {
            return Err(CortexError::invalid_output(
                "response_format",
                "response_format.json_schema.schema",
                format!("{} bytes: a schema is at most 256 KiB", schema.len()),
            ));
        }
        Ok(())
    }
}

/// How much the model thinks before it answers. One knob that every API maps onto.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reasoning {
    /// Thinking on or off, through the chat template (`enable_thinking`); `None`: the template's default.
    pub enabled: Option<bool>,
    /// `low`, `medium` or `high`, through the chat template (`reasoning_effort`); `None`: the template's default.
    pub effort: Option<String>,
    /// Most tokens a thought may take; then it is closed and the answer follows. `None`: no limit.
    pub budget_tokens: Option<u32>,
}

impl Reasoning {
    pub fn validate(&self) -> Result<(), CortexError> {
        if let Some(effort) = &self.effort
            && !matches!(effort.as_str(), "low" | "medium" | "high")
        {
            return Err(CortexError::invalid(
                "reasoning_effort",
                format!("{effort:?}"),
                "must be 'low', 'medium' or 'high'",
            ));
        }
        Ok(())
    }
}

impl Behavior {
    pub fn validate(&self) -> Result<(), CortexError> {
        if self.max_tokens == Some(0) {
            return Err(CortexError::invalid("max_tokens", 0, "must be at least 1, or None for no limit"));
        }
        if let Some(n) = self.context_size
            && !(16..=1 << 20).contains(&n)
        {
            return Err(CortexError::invalid("context_size", n, "must be between 16 and 1048576 tokens, or None"));
        }
        if let Some(k) = self.logprobs
            && k > MAX_TOP_LOGPROBS
        {
            return Err(CortexError::invalid("logprobs", k, "must be between 0 and 20, or None (off)"));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(CortexError::invalid(
                "stop",
                format!("{} strings", self.stop.len()),
                "at most 16 stop strings",
            ));
        }
        for s in &self.stop {
            if s.is_empty() {
                return Err(CortexError::invalid("stop", "\"\"", "stop strings must not be empty"));
            }
            if s.len() > MAX_STOP_BYTES {
                return Err(CortexError::invalid(
                    "stop",
                    format!("{} bytes", s.len()),
                    "each stop string is at most 256 bytes",
                ));
            }
        }
        Ok(())
    }
}

impl Sampling {
    pub fn validate(&self) -> Result<(), CortexError> {
        check(self.temperature, "temperature", |v| (0.0..=100.0).contains(&v), "must be between 0 (greedy) and 100")?;
        check(self.top_p, "top_p", |v| v > 0.0 && v <= 1.0, "must be in (0, 1]; 1 disables it")?;
        check(self.min_p, "min_p", |v| (0.0..=1.0).contains(&v), "must be in [0, 1]; 0 disables it")?;
        check(self.repeat_penalty, "repeat_penalty", |v| v > 0.0 && v <= 10.0, "must be in (0, 10]; 1 disables it")?;
        check(self.presence_penalty, "presence_penalty", |v| (-2.0..=2.0).contains(&v), "must be in [-2, 2]")?;
        check(self.frequency_penalty, "frequency_penalty", |v| (-2.0..=2.0).contains(&v), "must be in [-2, 2]")?;
        if let Some(g) = &self.grammar
            && (g.trim().is_empty() || g.len() > MAX_GRAMMAR_BYTES)
        {
            return Err(CortexError::invalid(
                "grammar",
                format!("{} bytes", g.len()),
                "must be a non-empty GBNF grammar of at most 64 KiB",
            ));
        }
        // llama.cpp parses a grammar recursively, a level of stack per group (see the gbnf module).
        if let Some(depth) = self.grammar.as_deref().map(gbnf::nesting)
            && depth > gbnf::MAX_GRAMMAR_NESTING
        {
            return Err(CortexError::invalid(
                "grammar",
                format!("{depth} nested groups"),
                "groups ( ... ) may nest at most 128 deep",
            ));
        }
        self.validate_logit_bias()
    }

    fn validate_logit_bias(&self) -> Result<(), CortexError> {
        if self.logit_bias.len() > MAX_LOGIT_BIAS {
            return Err(CortexError::invalid(
                "logit_bias",
                format!("{} tokens", self.logit_bias.len()),
                "at most 1024 token biases",
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.logit_bias.len());
        for &(token, bias) in &self.logit_bias {
            if token < 0 {
                return Err(CortexError::invalid_output(
                    "logit_bias",
                    format!("logit_bias[\"{token}\"]"),
                    "token ids are 0 or more",
                ));
            }
            if !(bias.is_finite() && (-MAX_BIAS..=MAX_BIAS).contains(&bias)) {
                return Err(CortexError::invalid_output(
                    "logit_bias",
                    format!("logit_bias[\"{token}\"]"),
                    format!("the bias is {bias}: must be between -100 and 100"),
                ));
            }
            if !seen.insert(token) {
                return Err(CortexError::invalid_output(
                    "logit_bias",
                    format!("logit_bias[\"{token}\"]"),
                    "the token is given twice",
                ));
            }
        }
        Ok(())
    }

    /// Every biased token is in a vocabulary of `n_vocab` tokens (checked when a request reaches a model).
    pub fn check_vocab(&self, n_vocab: i32) -> Result<(), CortexError> {
        match self.logit_bias.iter().find(|&&(token, _)| token >= n_vocab) {
            Some((token, _)) => Err(CortexError::invalid_output(
                "logit_bias",
                format!("logit_bias[\"{token}\"]"),
                format!("token id {token} is not in the model's vocabulary (ids 0 to {})", n_vocab - 1),
            )),
            None => Ok(()),
        }
    }
}

fn check(value: f32, field: &'static str, ok: impl Fn(f32) -> bool, expected: &'static str) -> Result<(), CortexError> {
    // NaN fails every range check above, so it is reported like any other bad value.
    if value.is_finite() && ok(value) { Ok(()) } else { Err(CortexError::invalid(field, value, expected)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        InferenceConfig::default().validate().unwrap();
    }

    #[test]
    fn a_grammar_nested_past_the_limit_is_refused_before_llama_cpp_parses_it() {
        let nested = |n: usize| Sampling {
            grammar: Some(format!("root ::= {}\"a\"{}", "(".repeat(n), ")".repeat(n))),
            ..Default::default()
        };
        nested(gbnf::MAX_GRAMMAR_NESTING).validate().unwrap();
        let err = nested(gbnf::MAX_GRAMMAR_NESTING + 1).validate().unwrap_err();
        assert_eq!(err.to_string(), "invalid grammar = 129 nested groups: groups ( ... ) may nest at most 128 deep");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases: Vec<(Sampling, &str)> = vec![
            (Sampling { temperature: -0.1, ..Default::default() }, "temperature"),
            (Sampling { temperature: f32::NAN, ..Default::default() }, "temperature"),
            (Sampling { top_p: 0.0, ..Default::default() }, "top_p"),
            (Sampling { min_p: 1.5, ..Default::default() }, "min_p"),
            (Sampling { repeat_penalty: 0.0, ..Default::default() }, "repeat_penalty"),
            (Sampling { presence_penalty: 3.0, ..Default::default() }, "presence_penalty"),
            (Sampling { frequency_penalty: f32::INFINITY, ..Default::default() }, "frequency_penalty"),
        ];
        for (sampling, field) in cases {
            match sampling.validate() {
                Err(CortexError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn logit_bias_limits_name_the_field() {
        let ok = Sampling { logit_bias: vec![(0, -100.0), (7, 100.0), (9, 0.5)], ..Default::default() };
        ok.validate().unwrap();
        ok.check_vocab(10).unwrap();
        let bad = [
            vec![(-1, 1.0)],
            vec![(3, 100.5)],
            vec![(3, -101.0)],
            vec![(3, f32::NAN)],
            vec![(3, f32::NEG_INFINITY)],
            vec![(3, 1.0), (3, 2.0)],
            (0..1025).map(|t| (t, 1.0)).collect(),
        ];
        for logit_bias in bad {
            let sampling = Sampling { logit_bias: logit_bias.clone(), ..Default::default() };
            match sampling.validate() {
                Err(CortexError::InvalidConfig { field, .. } | CortexError::InvalidOutput { field, .. }) => {
                    assert_eq!(field, "logit_bias");
                }
                other => panic!("{:?}: expected an error, got {other:?}", &logit_bias[..logit_bias.len().min(3)]),
            }
        }
        Sampling { logit_bias: (0..1024).map(|t| (t, 1.0)).collect(), ..Default::default() }.validate().unwrap();
    }

    #[test]
    fn logit_bias_ids_past_the_vocabulary_are_named() {
        let sampling = Sampling { logit_bias: vec![(3, 1.0), (49_152, -5.0)], ..Default::default() };
        sampling.validate().unwrap();
        sampling.check_vocab(49_153).unwrap();
        let err = sampling.check_vocab(49_152).unwrap_err();
        assert!(matches!(err, CortexError::InvalidOutput { field: "logit_bias", .. }), "{err:?}");
        assert!(err.to_string().contains("49152") && err.to_string().contains("0 to 49151"), "{err}");
    }

    #[test]
    fn behavior_limits() {
        let bad = [
            Behavior { max_tokens: Some(0), ..Default::default() },
            Behavior { context_size: Some(8), ..Default::default() },
            Behavior { stop: vec![String::new()], ..Default::default() },
            Behavior { stop: vec!["x".into(); 17], ..Default::default() },
            Behavior { stop: vec!["x".repeat(257)], ..Default::default() },
            Behavior { logprobs: Some(21), ..Default::default() },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} should be rejected");
        }
        for k in [0, 1, 20] {
            Behavior { logprobs: Some(k), ..Default::default() }.validate().unwrap();
        }
    }
}
