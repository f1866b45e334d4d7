"""An open_clip image tower as a transformers vision model, so a LLaVA can see through a CLIP.

LLaVA's design is a CLIP image encoder (ViT-L/14) in front of a language model: the MLLM sees
exactly as well as the CLIP it is built on. The world's reward CLIP is an open_clip
ModifiedResNet, which no transformers class loads; this wraps it as a ``PreTrainedModel`` whose
hidden states are one token per image (the CLIP's normalised image embedding), the shape
LLaVA's projector reads. ``register()`` makes ``AutoConfig``/``AutoModel`` (and so
``AutoModelForImageTextToText``) load a LLaVA with this tower from its directory; it is called
by the transformers backend before any load, so the bundled world MLLM loads like a user's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

MODEL_TYPE = "open_clip_vision"


class OpenClipVisionConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, vision_cfg: dict[str, Any] | None = None, embed_dim: int = 64,
                 **kwargs: Any) -> None:
        self.vision_cfg = dict(vision_cfg or {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16})
        self.embed_dim = embed_dim
        self.hidden_size = embed_dim
        """What LLaVA's projector reads as the vision feature width."""
        self.image_size = int(self.vision_cfg["image_size"])
        super().__init__(**kwargs)


class OpenClipVisionModel(PreTrainedModel):
    config_class = OpenClipVisionConfig
    base_model_prefix = "open_clip_vision"
    main_input_name = "pixel_values"

    def __init__(self, config: OpenClipVisionConfig) -> None:
        super().__init__(config)
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        self.visual = _build_vision_tower(config.embed_dim, CLIPVisionCfg(**config.vision_cfg))
        self.post_init()

    def _init_weights(self, module: Any) -> None:
        """open_clip initialises its own layers; loading replaces them with the CLIP's."""

    def forward(self, pixel_values: torch.Tensor, **_: Any) -> BaseModelOutputWithPooling:
        # (LLaVA passes output_hidden_states/return_dict: the one token is every hidden state)
        pooled = F.normalize(self.visual(pixel_values.to(self.dtype)), dim=-1)
        token = pooled[:, None]
        return BaseModelOutputWithPooling(last_hidden_state=token, pooler_output=pooled,
                                          hidden_states=(token,))


def register() -> None:
    """Idempotent: make the Auto classes know this tower."""
    AutoConfig.register(MODEL_TYPE, OpenClipVisionConfig, exist_ok=True)
    AutoModel.register(OpenClipVisionConfig, OpenClipVisionModel, exist_ok=True)
