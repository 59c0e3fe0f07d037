"""What a request to :class:`~rusty_genius.Genius` gives back, whole: an :class:`Answer` (from ``complete``),
:class:`Embeddings`, :class:`ModelInfo`; and the checks and conversions of their inputs and outputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rusty_genius.core.errors import EngineClosedError, RequestError
from rusty_genius.core.events import Event, Timings, Usage
from rusty_genius.core.output import Output, ToolCall, tool_calls_of

__all__ = ["Answer", "Embeddings", "ModelInfo"]

EmbedInput = str | Sequence[int]
"""One input of :meth:`Genius.embed`: a text, or token ids of the model's vocabulary."""


@dataclass(frozen=True)
class Answer:
    """A whole answer, from :meth:`Genius.complete`.

    ``tool_calls``: the functions the model called, in order (then ``finish_reason`` is ``"tool_calls"``). ``parsed``:
    the answer read as the response format asked: an instance of the pydantic model given as ``response_format``
    (``Model.model_validate_json(content)``), the decoded JSON for a JSON schema or ``json_object``; None for text,
    and None when the content does not parse or validate (an answer cut short by ``max_tokens``, say): the content
    is kept as it came, and nothing is invented in its place. ``logprobs``: the ``token_logprob`` events of the answer's
    tokens, in order (``text``, ``logprob``, ``token_bytes``, ``top_logprobs``), when the config asked for them
    (``logprobs=K``); empty otherwise.
    """

    content: str
    thinking: str
    finish_reason: str
    usage: Usage
    timings: Timings
    tool_calls: list[ToolCall] = field(default_factory=list)
    parsed: Any = None
    logprobs: list[Event] = field(default_factory=list)
    stop_sequence: str | None = None
    """The stop string that ended the answer, when one did (then ``finish_reason`` is ``"stop"``)."""

    @property
    def message(self) -> dict[str, Any]:
        """This answer as the assistant message of the conversation's next request: ``role``, ``content``, and
        ``tool_calls`` (OpenAI's form) and ``reasoning_content`` when there are some."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.thinking:
            message["reasoning_content"] = self.thinking
        return message


@dataclass(frozen=True)
class Embeddings(Sequence[list[float]]):
    """The vectors of :meth:`Genius.embed`, one per input in order (indexing and iterating give them), and the
    tokens the inputs took."""

    vectors: list[list[float]]
    prompt_tokens: int

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index: Any) -> Any:
        return self.vectors[index]


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model can do, from :meth:`Genius.model_info`."""

    context_size: int
    """Tokens each conversation's window holds (prompt and answer)."""
    vocab_size: int
    embedding_size: int
    """Width of its embeddings."""
    pooling: str
    """How its embeddings are pooled: ``mean`` (chat models, whose GGUF names none), ``cls``, ``last`` or ``rank``."""
    embedding_only: bool
    """An embedding model (BERT-like, or a GGUF naming a pooling): it answers :meth:`Genius.embed` only."""
    fill_in_middle: bool
    """It has fill-in-the-middle tokens: :meth:`Genius.generate` takes a ``suffix``."""


def embed_inputs(inputs: object) -> list[str | list[int]]:
    """``inputs`` as a batch: a text or one token list alone becomes a batch of one."""
    if isinstance(inputs, str) or is_ids(inputs):
        inputs = [inputs]
    if not isinstance(inputs, Sequence) or isinstance(inputs, (bytes, bytearray)):
        raise RequestError("embed: inputs must be a text, a list of token ids, or a list of those")
    if not inputs:
        raise RequestError("embed: inputs is empty; send at least one text")
    batch: list[str | list[int]] = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            batch.append(item)
        elif is_ids(item):
            batch.append(list(item))
        else:
            raise RequestError(f"embed: input[{i}] must be a text or a list of token ids")
    return batch


def is_ids(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes, bytearray))
        and len(value) > 0
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def token_ids(ids: object) -> list[int]:
    if (
        not isinstance(ids, Sequence)
        or isinstance(ids, (str, bytes))
        or not all(isinstance(t, int) and not isinstance(t, bool) and -(2**31) <= t < 2**31 for t in ids)
    ):
        raise RequestError("token ids must be a list of integers")
    return list(ids)


def unit_length(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm > 0 else vector


def parser_of(response_format: object, output: Output) -> Callable[[str], Any] | None:
    """How :attr:`Answer.parsed` is read from the content: a pydantic model's ``model_validate_json`` (pydantic is
    never imported here), JSON for a JSON response format, nothing for text."""
    if isinstance(response_format, type) and hasattr(response_format, "model_validate_json"):
        validate: Callable[[str], Any] = response_format.model_validate_json
        return validate
    return json.loads if output.response_format != "text" else None


def answer_of(events: list[Event], parser: Callable[[str], Any] | None = None) -> Answer:
    end = events[-1]
    if end.kind != "complete" or end.usage is None or end.timings is None:
        raise EngineClosedError("the stream ended without completing")
    content = "".join(e.text or "" for e in events if e.kind == "content")
    parsed = None
    if parser is not None and content.strip():
        try:
            parsed = parser(content)
        except ValueError:  # json.JSONDecodeError and pydantic's ValidationError both are
            parsed = None
    return Answer(
        content=content,
        thinking="".join(e.text or "" for e in events if e.kind == "thought_delta"),
        finish_reason=end.finish_reason or "stop",
        usage=end.usage,
        timings=end.timings,
        tool_calls=tool_calls_of(events),
        parsed=parsed,
        logprobs=[e for e in events if e.kind == "token_logprob"],
        stop_sequence=end.stop_sequence,
    )
