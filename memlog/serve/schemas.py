"""Request bodies of the server (pydantic): the OpenAI subset it answers, and the memory API.

Unknown OpenAI fields are ignored (clients send many); values memlog cannot honour are
refused with a 400 (``n`` other than 1, a prompt list, an empty conversation). Chat takes
vLLM's ``continue_final_message`` extension: the reply continues a final assistant message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from memlog.serve.generate import Sampling

MAX_TOKENS_LIMIT = 2048


class _Sampled(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None

    def sampling(self) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Sampling(
            max_tokens=self.max_completion_tokens or self.max_tokens or 64,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
        )


class CompletionRequest(_Sampled):
    prompt: str = Field(min_length=1)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class ChatRequest(_Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    continue_final_message: bool = False  # as vLLM: the reply continues a final assistant message

    @model_validator(mode="after")
    def _final_is_assistant(self) -> "ChatRequest":
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs the last message to be the assistant's text to continue")
        return self


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str
    relation: str
    object: str


class FactsIn(BaseModel):
    """``{"facts": [{"subject", "relation", "object"}, …]}``, injected in order, one unit each."""

    model_config = ConfigDict(extra="forbid")

    facts: list[FactIn] = Field(min_length=1, max_length=1000)


class SleepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cycles: int | None = Field(default=None, ge=1, le=100)
    until_converged: bool = False

    @field_validator("until_converged")
    @classmethod
    def _one_of(cls, value: bool, info) -> bool:
        if value and info.data.get("cycles") is not None:
            raise ValueError("give cycles or until_converged, not both")
        return value
