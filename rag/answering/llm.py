"""The only place that speaks to a language model server: any OpenAI-compatible chat-completions endpoint.

Every failure (nothing listening, a timeout, an HTTP error, an empty or malformed reply) becomes LLMUnavailable,
so the caller can fall back to the extractive answer without knowing the client library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rag.errors import LLMUnavailable

Message = dict[str, str]


class OpenAIChatLLM:
    """A chat model behind an OpenAI-compatible base URL (llama.cpp, Ollama, vLLM, a hosted API)."""

    def __init__(
        self, *, base_url: str, model: str, api_key: str, timeout_s: float, max_tokens: int, temperature: float = 0.0
    ) -> None:
        import openai

        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        # No retries: a slow or absent server must cost one timeout, not three, before the fallback answers.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self._errors: tuple[type[BaseException], ...] = (openai.OpenAIError,)

    def complete(self, messages: list[Message]) -> str:
        """The whole reply to ``messages``."""
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
            content = response.choices[0].message.content
        except self._errors as exc:
            raise LLMUnavailable(_describe(exc)) from exc
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMUnavailable(f"the model server's reply was malformed ({exc})") from exc
        if not isinstance(content, str):
            raise LLMUnavailable("the model server's reply had no text")
        return content

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """The reply to ``messages`` as the model writes it; the whole stream is bounded by the timeout."""
        deadline = time.monotonic() + self.timeout_s
        try:
            chunks: Any = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stream=True,
            )
            try:
                for chunk in chunks:
                    if time.monotonic() > deadline:
                        raise LLMUnavailable(f"the model server took longer than {self.timeout_s:g} s")
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta.content
                    if delta:
                        yield delta
            finally:
                chunks.close()
        except self._errors as exc:
            raise LLMUnavailable(_describe(exc)) from exc
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMUnavailable(f"the model server's stream was malformed ({exc})") from exc


def _describe(exc: BaseException) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "the model server did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "the model server could not be reached"
    if isinstance(exc, openai.APIStatusError):
        return f"the model server answered HTTP {exc.status_code}"
    return f"the model server failed ({type(exc).__name__})"
