"""The only place that speaks to a language model server: any OpenAI-compatible chat-completions endpoint.

Every failure (nothing listening, a timeout, an HTTP error, an empty or malformed reply) becomes LLMUnavailable,
so the caller can fall back to the extractive answer without knowing the client library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rag.errors import LLMUnavailable
from rag.types import TokenUsage

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

    def complete(self, messages: list[Message], *, usage: TokenUsage | None = None) -> str:
        """The whole reply to ``messages``; ``usage`` gets the server's token counts, if it reports them."""
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
            _record(response, usage)
            content = response.choices[0].message.content
        except self._errors as exc:
            raise LLMUnavailable(_describe(exc)) from exc
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMUnavailable(f"the model server's reply was malformed ({exc})") from exc
        if not isinstance(content, str):
            raise LLMUnavailable("the model server's reply had no text")
        return content

    def stream(self, messages: list[Message], *, usage: TokenUsage | None = None) -> Iterator[str]:
        """The reply to ``messages`` as the model writes it; the whole stream is bounded by the timeout.

        ``usage`` gets the server's token counts from the stream's last chunk, if the server sends one (OpenAI's
        ``stream_options.include_usage``; servers that do not know the option ignore it) and the stream is read
        to its end.
        """
        deadline = time.monotonic() + self.timeout_s
        try:
            chunks: Any = self._client.chat.completions.create(  # type: ignore[call-overload]
                model=self.model,
                messages=messages,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                for chunk in chunks:
                    if time.monotonic() > deadline:
                        raise LLMUnavailable(f"the model server took longer than {self.timeout_s:g} s")
                    _record(chunk, usage)
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


def _record(response: Any, usage: TokenUsage | None) -> None:
    """Copy a reply's (or a chunk's) token counts into ``usage``; a reply without whole counts changes nothing."""
    reported = getattr(response, "usage", None)
    if usage is None or reported is None:
        return
    counts = [getattr(reported, name, None) for name in ("prompt_tokens", "completion_tokens", "total_tokens")]
    if all(isinstance(count, int) and count >= 0 for count in counts):
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens = counts  # type: ignore[assignment]


def _describe(exc: BaseException) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "the model server did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "the model server could not be reached"
    if isinstance(exc, openai.APIStatusError):
        return f"the model server answered HTTP {exc.status_code}"
    return f"the model server failed ({type(exc).__name__})"
