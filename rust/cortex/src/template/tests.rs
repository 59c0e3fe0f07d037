//! Real templates (tests/templates/, see its README) against outputs checked with Hugging Face's Jinja2 setup, and
//! hostile templates that must fail fast with the limit named.

use std::time::{Duration, Instant};

use super::*;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + \
                      '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' \
                      }}{% endif %}";
const SMOLLM2: &str = include_str!("../../tests/templates/HuggingFaceTB-SmolLM2-135M-Instruct.jinja");
const QWEN25: &str = include_str!("../../tests/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
const QWEN3: &str = include_str!("../../tests/templates/Qwen-Qwen3-0.6B.jinja");
const LLAMA31: &str = include_str!("../../tests/templates/meta-llama-Llama-3.1-8B-Instruct.jinja");
const HERMES: &str = include_str!("../../tests/templates/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja");
const MISTRAL: &str = include_str!("../../tests/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja");
const DEEPSEEK_R1: &str = include_str!("../../tests/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja");

fn compile(source: &str) -> ChatTemplate {
    ChatTemplate::new(source, "<s>", "</s>").expect("template compiles")
}

fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: Some("Get the city's weather".into()),
        parameters: concat!(
            r#"{"type":"object","properties":{"city":{"type":"string","description":"The city"}},"#,
            r#""required":["city"]}"#
        )
        .into(),
    }
}

/// system, user, an assistant call, its result.
fn tool_conversation(call_id: &str) -> Vec<ChatMessage> {
    vec![
        msg(Role::System, "Be brief."),
        msg(Role::User, "Weather in Paris?"),
        ChatMessage {
            role: Role::Assistant,
            tool_calls: vec![ToolCall {
                id: call_id.into(),
                name: "get_weather".into(),
                arguments: r#"{"city": "Paris"}"#.into(),
            }],
            ..ChatMessage::default()
        },
        ChatMessage { tool_call_id: Some(call_id.into()), name: Some("get_weather".into()), ..msg(Role::Tool, "18C") },
    ]
}

fn render(template: &ChatTemplate, messages: &[ChatMessage], tools: &[ToolSpec]) -> String {
    template.render(messages, tools, true, &TemplateKwargs::default()).expect("renders")
}

#[test]
fn chatml_matches_llama_cpp_builtin() {
    let messages = [msg(Role::System, "You are terse."), msg(Role::User, "Hi")];
    let want = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(render(&compile(CHATML), &messages, &[]), want);
    assert_eq!(render(&compile(SMOLLM2), &messages, &[]), want);
    let no_prompt = compile(CHATML).render(&messages, &[], false, &TemplateKwargs::default()).unwrap();
    assert_eq!(no_prompt, want.trim_end_matches("<|im_start|>assistant\n"));
}

#[test]
fn smollm2_adds_its_default_system() {
    let got = render(&compile(SMOLLM2), &[msg(Role::User, "Hi")], &[]);
    assert_eq!(
        got,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen25_system_user() {
    let got = render(&compile(QWEN25), &[msg(Role::System, "Be brief."), msg(Role::User, "Hi")], &[]);
    assert_eq!(got, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

/// Qwen2.5 and Qwen3 render the tool conversation the same way.
const QWEN_TOOL_CONVERSATION: &str = "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to \
    assist with the user query.\n\nYou are provided with function signatures within <tools></tools> \
    XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \
    \"description\": \"Get the city's weather\", \"parameters\": {\"type\": \"object\", \
    \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}}, \
    \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object \
    with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": \
    <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWea\
    ther in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \
    \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n\
    18C\n</tool_response><|im_end|>\n<|im_start|>assistant\n";

#[test]
fn qwen25_tools_call_and_result() {
    let got = render(&compile(QWEN25), &tool_conversation("call_1"), &[weather_tool()]);
    let want = QWEN_TOOL_CONVERSATION;
    assert_eq!(got, want);
}

#[test]
fn llama31_tools_in_first_user_message() {
    let got = render(&compile(LLAMA31), &[msg(Role::User, "Weather in Paris?")], &[weather_tool()]);
    let want = "<s><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge \
        Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
        Given the following functions, please respond with a JSON for a function call with \
        its proper arguments that best answers the given prompt.\n\nRespond in the format \
        {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do \
        not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \
        \"name\": \"get_weather\",\n        \"description\": \"Get the city's weather\",\n        \
        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": \
        {\n                \"city\": {\n                    \"type\": \"string\",\n                    \
        \"description\": \"The city\"\n                }\n            },\n            \"required\": \
        [\n                \"city\"\n            ]\n        }\n    }\n}\n\nWeather in Paris?<|eot_id|><|st\
        art_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(got, want);
}

#[test]
fn llama31_call_and_result() {
    // A string result prints as JSON ("18C"): the template tests `is iterable`, which strings are, as in Jinja2.
    let got = render(&compile(LLAMA31), &tool_conversation("call_1"), &[weather_tool()]);
    let want = "<s><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge \
        Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_he\
        ader_id|>\n\nGiven the following functions, please respond with a JSON for a function \
        call with its proper arguments that best answers the given prompt.\n\nRespond in the \
        format {\"name\": function name, \"parameters\": dictionary of argument name and its \
        value}.Do not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": \
        {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the city's weather\",\n        \
        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": \
        {\n                \"city\": {\n                    \"type\": \"string\",\n                    \
        \"description\": \"The city\"\n                }\n            },\n            \"required\": \
        [\n                \"city\"\n            ]\n        }\n    }\n}\n\nWeather in Paris?<|eot_id|><|st\
        art_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": \
        {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"18C\"<|eot_id|><|\
        start_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(got, want);
}

#[test]
fn qwen3_thinking_switch() {
    let template = compile(QWEN3);
    assert!(template.supports_thinking());
    let messages = [msg(Role::User, "Hi")];
    let off = TemplateKwargs { enable_thinking: Some(false), ..TemplateKwargs::default() };
    let got = template.render(&messages, &[], true, &off).unwrap();
    assert_eq!(got, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    let on = TemplateKwargs { enable_thinking: Some(true), ..TemplateKwargs::default() };
    let got = template.render(&messages, &[], true, &on).unwrap();
    assert_eq!(got, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn qwen3_call_with_empty_content_gets_a_string() {
    // Qwen3 does `'</think>' in message.content`: the `none` content of a call turn fails, `""` renders.
    let got = render(&compile(QWEN3), &tool_conversation("call_1"), &[weather_tool()]);
    let want = QWEN_TOOL_CONVERSATION;
    assert_eq!(got, want);
}

#[test]
fn deepseek_r1_generation_prompt_opens_think() {
    let template = ChatTemplate::new(DEEPSEEK_R1, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>").unwrap();
    assert!(template.supports_thinking());
    assert!(!template.supports_tools());
    let got = render(&template, &[msg(Role::System, "Be brief."), msg(Role::User, "Hi")], &[]);
    assert_eq!(got, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜><think>\n");
}

#[test]
fn deepseek_r1_call_needs_null_content_and_text_arguments() {
    let template = compile(DEEPSEEK_R1);
    let messages = &tool_conversation("call_1")[1..];
    // Not a tool template: the calls are rendered by the template itself (it reads `tool_calls`) when no tools
    // are offered in this request.
    let got = render(&template, messages, &[]);
    let want = "<s><｜User｜>Weather in Paris?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep\
        ｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁ou\
        tput▁begin｜>18C<｜tool▁output▁end｜><｜tool▁outputs▁end｜>";
    assert_eq!(got, want);
}

#[test]
fn hermes_tools_call_and_result() {
    let got = render(&compile(HERMES), &tool_conversation("call_1"), &[weather_tool()]);
    let want = "<s><|im_start|>system\nYou are a function calling AI model. You are provided with \
        function signatures within <tools></tools> XML tags. You may call one or more functions \
        to assist with the user query. Don't make assumptions about what values to plug into \
        functions. Here are the available tools: <tools> {\"type\": \"function\", \"function\": \
        {\"name\": \"get_weather\", \"description\": \"get_weather(city: str) - Get the city's \
        weather\n\n    Args:\n        city(str): The city\", \"parameters\": {\"type\": \"object\", \
        \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}}, \
        \"required\": [\"city\"]}} </tools>Use the following pydantic model json schema for \
        each tool call you will make: {\"properties\": {\"name\": {\"title\": \"Name\", \"type\": \
        \"string\"}, \"arguments\": {\"title\": \"Arguments\", \"type\": \"object\"}}, \"required\": \
        [\"name\", \"arguments\"], \"title\": \"FunctionCall\", \"type\": \"object\"}}\nFor \
        each function call return a json object with function name and arguments within <tool_call></tool_\
        call> XML tags as follows:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": \
        <args-dict>}\n</tool_call><|im_end|>\n<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nW\
        eather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \
        \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>tool\n<tool_response>\n\
        18C\n</tool_response><|im_end|><|im_start|>assistant\n";
    assert_eq!(got, want);
}

#[test]
fn mistral_nemo_tools_and_its_own_checks() {
    let template = compile(MISTRAL);
    let got = render(&template, &tool_conversation("abcdefghi"), &[weather_tool()]);
    let want = "<s>[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \
        \"description\": \"Get the city's weather\", \"parameters\": {\"type\": \"object\", \
        \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}}, \
        \"required\": [\"city\"]}}}][/AVAILABLE_TOOLS][INST]Weather in Paris?[/INST][TOOL_CALLS][{\"name\"\
        : \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcdefghi\"}]</s>[TOOL_RESULTS]\
        {\"content\": 18C, \"call_id\": \"abcdefghi\"}[/TOOL_RESULTS]";
    assert_eq!(got, want);
    // The template's raise_exception reaches the user with its message.
    let err = template.render(&tool_conversation("short"), &[weather_tool()], true, &TemplateKwargs::default());
    let Err(CortexError::Template(message)) = err else { panic!("{err:?}") };
    assert!(message.contains("Tool call IDs should be alphanumeric strings with length 9!"), "{message}");
}

#[test]
fn a_template_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatTemplate>();
}

#[test]
fn flags_follow_the_source() {
    for (source, tools, thinking) in [
        (CHATML, false, false),
        (SMOLLM2, false, false),
        (QWEN25, true, false),
        (QWEN3, true, true),
        (LLAMA31, true, false),
        (HERMES, true, false),
        (MISTRAL, true, false),
        (DEEPSEEK_R1, false, true),
    ] {
        let template = compile(source);
        assert_eq!((template.supports_tools(), template.supports_thinking()), (tools, thinking), "{source:.60}");
    }
}

#[test]
fn tools_without_template_support_go_in_the_system_message() {
    let got = render(&compile(SMOLLM2), &tool_conversation("call_1"), &[weather_tool()]);
    let instructions = tool_instructions(&[weather_tool()]);
    assert!(instructions.contains("\"name\": \"get_weather\""));
    assert!(instructions.contains("<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"));
    let want = format!(
        "<|im_start|>system\n{instructions}\n\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n\
         <|im_start|>assistant\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Paris\"}}}}\n\
         </tool_call><|im_end|>\n<|im_start|>tool\n<tool_response>\n18C\n</tool_response><|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert_eq!(got, want);
    // No system message: one is added first.
    let got = render(&compile(CHATML), &[msg(Role::User, "Hi")], &[weather_tool()]);
    assert!(got.starts_with(&format!("<|im_start|>system\n{instructions}<|im_end|>\n<|im_start|>user\nHi")));
}

#[test]
fn tool_results_become_user_turns_where_role_tool_is_dropped() {
    let source = "{% for m in messages %}{% if m.role == 'user' %}U:{{ m.content }}\n{% elif m.role == 'assistant' %}\
                  A:{{ m.content }}\n{% endif %}{% endfor %}";
    let got = render(&compile(source), &tool_conversation("call_1")[1..], &[weather_tool()]);
    assert!(got.ends_with("U:<tool_response>\n18C\n</tool_response>\n"), "{got}");
}

/// 200 messages and 20 tools through every template: they render, within a small part of the fuel.
#[test]
fn long_conversations_fit_the_fuel() {
    let tools: Vec<ToolSpec> = (0..20).map(|i| ToolSpec { name: format!("tool_{i}"), ..weather_tool() }).collect();
    let mut messages = vec![msg(Role::System, "Be brief.")];
    for i in 0..50 {
        messages.push(msg(Role::User, &format!("question {i} {}", "word ".repeat(40))));
        messages.extend(tool_conversation("abcdefghi")[2..].iter().cloned());
        messages.push(msg(Role::Assistant, &format!("answer {i} {}", "word ".repeat(40))));
    }
    messages.push(msg(Role::User, "last"));
    let mut most = 0;
    for source in [CHATML, SMOLLM2, QWEN25, QWEN3, LLAMA31, HERMES, MISTRAL, DEEPSEEK_R1] {
        let template = compile(source);
        let started = Instant::now();
        let (text, fuel) = template.render_shapes(&messages, &tools, true, &TemplateKwargs::default()).unwrap();
        assert!(text.len() > 10_000);
        assert!(fuel < FUEL / 20, "{fuel} fuel for {source:.60}");
        assert!(started.elapsed() < Duration::from_secs(2));
        most = most.max(fuel);
    }
    eprintln!("most fuel spent by a real template: {most} of {FUEL}");
}

/// Each hostile template fails with CortexError::Template naming the limit, fast.
#[test]
fn hostile_templates_stop_at_a_limit() {
    let cases = [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"),
        ("{% for i in range(10**9) %}x{% endfor %}", "too many elements"),
        ("{{ 'x' * 100000000 }}", "limit"),
        ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "limit"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion limit"),
        ("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}", "steps"),
        (
            "{% set ns = namespace(x=[]) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}{% endfor %}\
             {{ ns.x|tojson }}",
            "limit of 128",
        ),
        ("{{ ('a\n' * 10000)|indent(100000) }}", "limit"),
        ("{{ '{:>1000000000}'.format(1) }}", "over the limit of 1024"),
        ("{{ '{:>{w}}'.format(1, w=1000000000) }}", "over the limit of 1024"),
        ("{{ '{:.1000000000f}'.format(1.5) }}", "over the limit of 1024"),
        ("{{ '%1000000000d'|format(1) }}", "limit"),
        ("{{ ([1] * 100000000)|length }}", ""),
        ("{{ (range(100000)|list * 1000)|length }}", ""),
        ("{{ ('a' * 1000).replace('a', 'b' * 100000) }}", ""),
        ("{{ [1]|pprint }}", "unknown filter"),
    ];
    for (source, needle) in cases {
        let started = Instant::now();
        let result = compile(source).render(&[msg(Role::User, "Hi")], &[], true, &TemplateKwargs::default());
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(2), "{source}: {elapsed:?}");
        match result {
            Err(CortexError::Template(message)) => assert!(message.contains(needle), "{source}: {message}"),
            Ok(text) => assert!(text.len() <= MAX_OUTPUT_BYTES && needle.is_empty(), "{source}: {} bytes", text.len()),
            Err(other) => panic!("{source}: {other:?}"),
        }
    }
}

/// A value nested as deep as the fuel allows, then printed, compared and dropped: minijinja recurses once per level,
/// which would overflow a default thread stack and abort; the render thread's stack holds it.
#[test]
fn deepest_nesting_fits_the_render_stack() {
    for source in [
        "{% set ns = namespace(x=[]) %}{% for i in range(55000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
        "{% set ns = namespace(x=[], y=[]) %}{% for i in range(33000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}\
         {% endfor %}{{ ns.x == ns.y }}{{ [ns.x, ns.y]|sort|length }}{{ ns.x|string|length }}",
    ] {
        let started = Instant::now();
        let got = compile(source).render(&[], &[], false, &TemplateKwargs::default()).unwrap();
        assert!(got.starts_with("[[[") || got.starts_with("True"), "{got:.40}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn no_escape_from_the_sandbox() {
    for source in [
        "{{ ''.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self }}{{ config }}{{ request }}",
        "{% include '/etc/passwd' %}",
        "{% import 'x' as y %}",
        "{% extends 'base' %}",
    ] {
        match ChatTemplate::new(source, "", "").and_then(|t| t.render(&[], &[], false, &TemplateKwargs::default())) {
            Ok(text) => assert_eq!(text, "", "{source}"),
            Err(CortexError::Template(_)) => {}
            Err(other) => panic!("{source}: {other:?}"),
        }
    }
    let huge = "x".repeat(MAX_SOURCE_BYTES + 1);
    let Err(CortexError::Template(message)) = ChatTemplate::new(&huge, "", "") else { panic!() };
    assert!(message.contains("over the limit"), "{message}");
}

#[test]
fn errors_name_the_line() {
    let Err(CortexError::Template(message)) = ChatTemplate::new("ok\n{{ x }}\n{% if %}", "", "") else { panic!() };
    assert!(message.starts_with("line 3: syntax error"), "{message}");
    let template = compile("a\n\n{{ messages|foo }}");
    let Err(CortexError::Template(message)) = template.render(&[], &[], false, &TemplateKwargs::default()) else {
        panic!()
    };
    assert_eq!(message, "line 3: unknown filter: filter foo is unknown");
    let template = compile("{{ raise_exception('roles must alternate') }}");
    let Err(CortexError::Template(message)) = template.render(&[], &[], false, &TemplateKwargs::default()) else {
        panic!()
    };
    assert_eq!(message, "line 1: invalid operation: the template raised an exception: roles must alternate");
}

#[test]
fn tojson_is_python_json_dumps() {
    let template = compile(
        "{{ v|tojson }}|{{ v|tojson(indent=2) }}|{{ v|tojson(separators=[',', ':'], sort_keys=true) }}|\
         {{ 'é<'|tojson(ensure_ascii=true) }}",
    );
    let v = parse_json(r#"{"b": [1, 2.5, true, null], "a": "it's <b>\"x\"</b>\n", "c": {}, "d": []}"#);
    let source = template.env.get_template(NAME).unwrap();
    let got = source.render(minijinja::context! { v => v }).unwrap();
    let want = "{\"b\": [1, 2.5, true, null], \"a\": \"it's <b>\\\"x\\\"</b>\\n\", \"c\": {}, \"d\": \
        []}|{\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"a\": \"it's <b>\\\"x\\\"</b>\\\
        n\",\n  \"c\": {},\n  \"d\": []\n}|{\"a\":\"it's <b>\\\"x\\\"</b>\\n\",\"b\":[1,2.5,true,null],\"c\
        \":{},\"d\":[]}|\"\\u00e9<\"";
    assert_eq!(got, want);
}

#[test]
fn str_format_still_works() {
    let template = compile("{{ '{}-{:>5}-{:.2f}-{{x}}'.format('a', 'b', 1.5) }}");
    assert_eq!(template.render(&[], &[], false, &TemplateKwargs::default()).unwrap(), "a-    b-1.50-{x}");
}

#[test]
fn floats_print_as_python_repr() {
    for (v, want) in [
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (123456789012345.6, "123456789012345.6"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(python_float(v), want);
    }
}

#[test]
fn strftime_formats_utc_dates() {
    // 2024-07-26 13:05:09 UTC, a Friday.
    let secs = 1_722_000_309;
    assert_eq!(strftime("%d %b %Y", secs), "26 Jul 2024");
    assert_eq!(strftime("%Y-%m-%d %H:%M:%S %A %j %-d %B %% %Q", secs), "2024-07-26 13:25:09 Friday 208 26 July % %Q");
    assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
    assert_eq!(strftime("%Y-%m-%d %a", 951_782_400), "2000-02-29 Tue");
    let today = strftime_now("%Y".into());
    assert!(today.len() == 4 && today.as_str() >= "2025");
}

#[test]
fn split_prefill_takes_a_trailing_assistant_message_of_text() {
    let user = msg(Role::User, "Capital of France?");
    let conversation = [user.clone(), msg(Role::Assistant, "The capital is")];
    assert_eq!(split_prefill(&conversation), (&conversation[..1], Some("The capital is")));
    // Empty: a prefill of nothing (the open turn alone, as llama-server renders it).
    let empty = [user.clone(), msg(Role::Assistant, "")];
    assert_eq!(split_prefill(&empty), (&empty[..1], Some("")));
    // A lone assistant message; two in a row (the earlier one stays a closed turn).
    let lone = [msg(Role::Assistant, "Once")];
    assert_eq!(split_prefill(&lone), (&lone[..0], Some("Once")));
    let two = [user.clone(), msg(Role::Assistant, "First."), msg(Role::Assistant, "Then")];
    assert_eq!(split_prefill(&two), (&two[..2], Some("Then")));
    // Not a prefill: a conversation ending with the user, a tool result, or an assistant turn that calls tools.
    let asked = [user.clone()];
    assert_eq!(split_prefill(&asked), (&asked[..], None));
    let called = tool_conversation("call_1");
    assert_eq!(split_prefill(&called), (&called[..], None));
    assert_eq!(split_prefill(&called[..3]), (&called[..3], None));
    assert_eq!(split_prefill(&[]), (&[][..], None));
}

/// The prompt an engine makes: the messages before the prefill with the open turn, then the prefill as it is.
fn prefilled(template: &ChatTemplate, messages: &[ChatMessage], tools: &[ToolSpec]) -> String {
    let (before, prefill) = split_prefill(messages);
    render(template, before, tools) + prefill.unwrap_or_default()
}

#[test]
fn a_prefill_continues_the_open_turn_of_real_templates() {
    let question = msg(Role::User, "Capital of France?");
    let messages = [question.clone(), msg(Role::Assistant, "The capital of France is")];
    let fresh = render(&compile(SMOLLM2), &messages[..1], &[]);
    assert_eq!(prefilled(&compile(SMOLLM2), &messages, &[]), fresh.clone() + "The capital of France is");
    // Today's rendering of the same messages closes the turn and opens another one: the prefill avoids exactly that.
    let closed = render(&compile(SMOLLM2), &messages, &[]);
    assert!(closed.ends_with("The capital of France is<|im_end|>\n<|im_start|>assistant\n"), "{closed:?}");
    // With tools the template shows them as usual; the prefill follows the open turn.
    let got = prefilled(&compile(QWEN25), &messages, &[weather_tool()]);
    assert!(got.contains("<tools>") && got.contains("get_weather"), "{got}");
    assert!(got.ends_with("<|im_start|>assistant\nThe capital of France is"), "{got:?}");
    // A template that pre-opens the thought: the prefill is written inside it.
    let r1 = ChatTemplate::new(DEEPSEEK_R1, "<s>", "</s>").unwrap();
    let got = prefilled(&r1, &[question, msg(Role::Assistant, "Paris, surely.</think>\n\nParis")], &[]);
    assert_eq!(got, "<s><｜User｜>Capital of France?<｜Assistant｜><think>\nParis, surely.</think>\n\nParis");
}

#[test]
fn the_oldest_turn_goes_and_system_messages_and_the_last_turn_stay() {
    use crate::template::without_oldest_turn;
    let m = |role: Role, text: &str| ChatMessage::new(role, text.to_string());
    let chat = vec![
        m(Role::System, "sys"),
        m(Role::User, "u1"),
        m(Role::Assistant, "a1"),
        m(Role::User, "u2"),
        m(Role::Assistant, "a2"),
        m(Role::User, "u3"),
    ];
    let (fewer, n) = without_oldest_turn(&chat).unwrap();
    assert_eq!(n, 2);
    assert_eq!(fewer.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["sys", "u2", "a2", "u3"]);
    let (last, n) = without_oldest_turn(&fewer).unwrap();
    assert_eq!((n, last.iter().map(|m| m.content.as_str()).collect::<Vec<_>>()), (2, vec!["sys", "u3"]));
    assert!(without_oldest_turn(&last).is_none(), "the last turn stays");
    assert!(without_oldest_turn(&[m(Role::System, "only")]).is_none());
}
