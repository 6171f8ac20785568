"""Token counts a model server reports: OpenAI's `usage` object, read where it appears (the
last chunk of a stream asked with `stream_options: {include_usage: true}`, every chunk with
vLLM's continuous usage stats, a whole `chat.completion` body) and added up per run.

    >>> TokenUsage.from_openai({"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42})
    TokenUsage(prompt_tokens=12, completion_tokens=30)
    >>> TokenUsage.from_openai({"prompt_tokens": "many"}) is None    # not OpenAI's shape: nothing
    True
    >>> (TokenUsage(1, 2) + TokenUsage(10, 20)).as_openai()
    {'prompt_tokens': 11, 'completion_tokens': 22, 'total_tokens': 33}

flowctl never counts tokens itself: a run's usage is what its upstreams said, or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, value: Any) -> TokenUsage | None:
        """The counts in an OpenAI `usage` object; None for anything else (absent, null, or
        counts that are not non-negative integers)."""
        if value.__class__ is not dict:
            return None
        prompt: Any = value.get("prompt_tokens")
        completion: Any = value.get("completion_tokens", 0)
        if not (_count(prompt) and _count(completion)):
            return None
        return cls(prompt, completion)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def as_openai(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": self.total_tokens}


def _count(value: Any) -> bool:
    return value.__class__ is int and value >= 0


__all__ = ["TokenUsage"]
