"""Any chat model LangChain supports (JOURNEY_LLM=provider:model through init_chat_model), streamed with timeouts.

The OpenAI-compatible client in app/answer/llm.py stays the default and the faster path; this one is taken only when
JOURNEY_LLM is set. Neither LangChain's `langchain` package (where init_chat_model lives) nor the provider packages
(langchain-anthropic, langchain-ollama...) are required: a missing one stops startup with the pip command to run.
The timeouts are enforced here, around the model's async stream, the same way for every provider.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from app.answer.llm import LLMFailure, in_time, is_timeout
from app.config import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

CUSTOM_PREFIX = "python:"  # JOURNEY_LLM=python:package.module:factory, a chat model LangChain has no provider for
TOKEN_LIMIT_NAMES = {"ollama": "num_predict"}  # providers whose output-length argument is not max_tokens
# providers whose chat model takes max_retries (checked in their packages): JOURNEY_LLM_MAX_RETRIES goes to them;
# the others keep their own default unless JOURNEY_LLM_OPTIONS says {"max_retries": N}
RETRYING_PROVIDERS = {"openai", "azure_openai", "anthropic", "google_genai", "mistralai", "bedrock_converse"}


class LLMConfigError(RuntimeError):
    """JOURNEY_LLM cannot be used as set; the message says what to do."""


def _init_chat_model():
    """LangChain's init_chat_model, or LLMConfigError naming the package to install."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise LLMConfigError(
            "JOURNEY_LLM needs LangChain's init_chat_model: pip install langchain (or the project's "
            "'providers' extra) and the provider's package, e.g. pip install langchain langchain-anthropic"
        ) from exc
    return init_chat_model


def _custom(spec: str) -> BaseChatModel:
    """JOURNEY_LLM=python:module:attribute: the chat model a class or function of the deployment's own returns."""
    module_name, _, attribute = spec.removeprefix(CUSTOM_PREFIX).partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LLMConfigError(f"JOURNEY_LLM={spec}: cannot import {attribute!r} from {module_name!r}: {exc}") from exc
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - the deployment's own code: said at startup like the rest
        raise LLMConfigError(f"JOURNEY_LLM={spec}: {type(exc).__name__}: {str(exc)[:600]}") from exc


def load_chat_model(settings: Settings) -> BaseChatModel:
    """The chat model JOURNEY_LLM names, built now (LLMConfigError if it cannot be: package, provider, arguments)."""
    spec = settings.llm or ""
    if spec.startswith(CUSTOM_PREFIX):
        model = _custom(spec)
    else:
        init_chat_model = _init_chat_model()
        provider = spec.partition(":")[0].strip().replace("-", "_").lower()
        options: dict[str, Any] = {
            "temperature": settings.llm_temperature,
            TOKEN_LIMIT_NAMES.get(provider, "max_tokens"): settings.llm_max_tokens,
        }
        if provider in RETRYING_PROVIDERS:
            options["max_retries"] = settings.llm_max_retries
        options.update(settings.llm_options)
        try:
            model = init_chat_model(spec, **options)
        except ImportError as exc:  # the provider's package: LangChain's message names it (pip install ...)
            raise LLMConfigError(f"JOURNEY_LLM={spec}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - an unknown provider, a missing key, a bad option: said at startup
            raise LLMConfigError(f"JOURNEY_LLM={spec}: {type(exc).__name__}: {str(exc)[:600]}") from exc
    if not hasattr(model, "astream"):
        raise LLMConfigError(f"JOURNEY_LLM={spec} did not give a LangChain chat model (got {type(model).__name__})")
    return model


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a list (Anthropic, Gemini...)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text") or ""))
    return "".join(parts)


class ChatModelAnswerer:
    """Streams an answer from a LangChain chat model, bounded by a total and a between-tokens timeout."""

    def __init__(self, settings: Settings, chat_model: BaseChatModel) -> None:
        self.model = settings.llm_name
        self.chat_model = chat_model
        self.total_timeout = settings.llm_timeout
        self.token_timeout = settings.llm_token_timeout

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        """Yield text pieces; raise LLMFailure on error, stall or overrun. The model's stream is always closed.

        The first chunk and each next one must come within the token timeout (chunks without text count: the
        model is alive), the whole answer within the total timeout.
        """
        deadline = time.monotonic() + self.total_timeout
        chunks = self.chat_model.astream(messages)
        try:
            while True:
                try:
                    chunk = await in_time(
                        lambda: anext(chunks), deadline=deadline, total=self.total_timeout, per_token=self.token_timeout
                    )
                except StopAsyncIteration:
                    return
                text = text_of(chunk.content)
                if text:
                    yield text
        except LLMFailure:
            raise
        except Exception as exc:  # the provider's errors vary: HTTP status, connection, refusal
            outcome = "llm_timeout" if is_timeout(exc) else "llm_error"
            raise LLMFailure(outcome, f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        finally:
            try:
                await chunks.aclose()
            except Exception:  # noqa: BLE001, S110 - closing a broken stream may fail again
                pass
