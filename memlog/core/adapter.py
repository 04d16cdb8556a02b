"""Where each architecture keeps the parts MEMIT touches.

One table (``ARCHITECTURES``) maps a ``config.model_type`` to dotted attribute paths:
the list of decoder layers, the MLP output projection inside a layer (its weight is the
edited matrix, its *input* is MEMIT's key), the final norm and the LM head. Supporting a
new architecture is a new table entry, not a new code path.

Convention used everywhere in memlog: an edited weight is viewed as ``W`` of shape
``(d_out, d_in)`` so that ``out = W @ key``. GPT-2's ``Conv1D`` stores the transpose;
``edit_weight_view`` hides that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from memlog.errors import UserError


@dataclass(frozen=True)
class ArchitectureSpec:
    layers: str  # path from the model root to the ModuleList of decoder blocks
    mlp_out: str  # path from one block to the MLP output projection
    final_norm: str
    lm_head: str
    transposed: bool = False  # True when the weight is stored (d_in, d_out), as GPT-2's Conv1D
    rotary: str | None = None  # path to the rotary embedding module, for partial forwards


_LLAMA_LIKE = ArchitectureSpec(
    layers="model.layers",
    mlp_out="mlp.down_proj",
    final_norm="model.norm",
    lm_head="lm_head",
    rotary="model.rotary_emb",
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gpt2": ArchitectureSpec(
        layers="transformer.h",
        mlp_out="mlp.c_proj",
        final_norm="transformer.ln_f",
        lm_head="lm_head",
        transposed=True,
    ),
}


def _resolve(root: nn.Module, path: str) -> nn.Module:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class LayerAdapter:
    """Uniform access to an architecture's decoder blocks and MLP output projections."""

    model_type: str
    spec: ArchitectureSpec

    @classmethod
    def for_model(cls, model: nn.Module) -> "LayerAdapter":
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        return cls.for_model_type(model_type)

    @classmethod
    def for_model_type(cls, model_type: str | None) -> "LayerAdapter":
        spec = ARCHITECTURES.get(model_type or "")
        if spec is None:
            raise UserError(
                f"unsupported architecture {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}. "
                "Add an entry to memlog.core.adapter.ARCHITECTURES to support it."
            )
        return cls(model_type=model_type, spec=spec)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return _resolve(model, self.spec.layers)

    def num_layers(self, model: nn.Module) -> int:
        return len(self.layers(model))

    def block(self, model: nn.Module, layer: int) -> nn.Module:
        blocks = self.layers(model)
        if not 0 <= layer < len(blocks):
            raise UserError(f"layer {layer} is out of range: the model has layers 0-{len(blocks) - 1}")
        return blocks[layer]

    def mlp_out(self, model: nn.Module, layer: int) -> nn.Module:
        """The module whose input is MEMIT's key and whose weight is edited."""
        return _resolve(self.block(model, layer), self.spec.mlp_out)

    def mlp_out_name(self, model: nn.Module, layer: int) -> str:
        return f"{self.spec.layers}.{layer}.{self.spec.mlp_out}"

    def edit_weight(self, model: nn.Module, layer: int) -> nn.Parameter:
        """The raw stored parameter (may be transposed; see ``edit_weight_view``)."""
        module = self.mlp_out(model, layer)
        weight = getattr(module, "weight", None)
        if weight is None or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise UserError(
                f"layer {layer}'s MLP output projection has no dense 2-D weight "
                f"({type(module).__name__}); load the edit layers unquantised"
            )
        if weight.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise UserError(
                f"layer {layer}'s MLP output weight is {weight.dtype}; memlog edits only floating-point "
                "weights (with --load-in-4bit the edit layers are kept unquantised)"
            )
        return weight

    def edit_weight_view(self, model: nn.Module, layer: int) -> torch.Tensor:
        """The edited weight as (d_out, d_in), sharing storage with the parameter."""
        weight = self.edit_weight(model, layer)
        return weight.t() if self.spec.transposed else weight

    def key_dim(self, model: nn.Module, layer: int) -> int:
        return self.edit_weight_view(model, layer).shape[1]

    def final_norm(self, model: nn.Module) -> nn.Module:
        return _resolve(model, self.spec.final_norm)

    def lm_head(self, model: nn.Module) -> nn.Module:
        return _resolve(model, self.spec.lm_head)

    def rotary(self, model: nn.Module) -> nn.Module | None:
        return _resolve(model, self.spec.rotary) if self.spec.rotary else None

    def supports_partial_forward(self) -> bool:
        """Llama-family blocks can be run from a cached residual (see ``memlog.core.forward``)."""
        return self.spec.rotary is not None
