"""The published per-image RLCF (prompt) procedure, written from the paper and the official
code's structure, for ``tta bench reference`` to compare the service's ``rlcf`` against.

What makes it the published procedure rather than this service's: every forward runs the text
encoder over every class prompt at the full context (77 tokens) with gradients, and every step
encodes its views again through the policy's image tower (all views at step 0, which also
selects the confident ones, then the kept ones); the final prediction is one more full forward of
the clean view. Prompt pieces are built once per label set (as the reference's prompt learner
does at start-up), and the reward CLIP's class features once per label set; the reward model
encodes the kept views once per image. Batch size 1: one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adapters.policy_gradient import reinforce_loss, top_k_actions
from adapters.selection import select_confident
from models.loading import LoadedClip
from models.reward import Reward
from models.text import TextTower


class FullContextPrompts:
    """CoOp prompts ``[SOT] ctx <class> . [EOT] <pad ...>`` at the encoder's full context."""

    def __init__(self, clip: LoadedClip, labels: Sequence[str], ctx_init: str = "a photo of a") -> None:
        self.tower = TextTower(clip)
        self.n_ctx = int(self.tower.pool_index(self.tower.tokenize([ctx_init]))[0]) - 1
        tokens = self.tower.tokenize([f"{ctx_init} {label}." for label in labels])  # [C, 77]
        with torch.no_grad():
            embedded = self.tower.embed(tokens).float()
        self.prefix = embedded[:, :1]
        self.suffix = embedded[:, 1 + self.n_ctx :]
        self.ctx_init = embedded[0, 1 : 1 + self.n_ctx].clone()
        self.pool = self.tower.pool_index(tokens)

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        n_classes = self.prefix.shape[0]
        prompts = torch.cat([self.prefix, ctx.expand(n_classes, -1, -1), self.suffix], dim=1)
        return self.tower.encode_embeddings(prompts, self.pool)


class ReferenceRLCF:
    def __init__(self, policy: LoadedClip, reward: Reward, labels: Sequence[str], *, steps: int = 3,
                 lr: float = 7e-3, weight_decay: float = 5e-4, sample_k: int = 3,
                 selection: float = 0.1) -> None:
        self.policy, self.reward, self.labels = policy, reward, tuple(labels)
        self.prompts = FullContextPrompts(policy, labels)
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self.sample_k, self.selection = sample_k, selection

    def forward(self, views: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            image = self.policy.encode_images(views)
        return self.policy.logit_scale * image @ self.prompts.features(ctx).t()

    def classify(self, views: torch.Tensor) -> torch.Tensor:
        """Views [V, 3, H, W] (the clean view first) -> probabilities of the clean view [C]."""
        ctx = nn.Parameter(self.prompts.ctx_init.clone().unsqueeze(0))  # the per-image reset
        optimizer = torch.optim.AdamW([ctx], lr=self.lr, weight_decay=self.weight_decay)
        kept, rewards = views, None
        for _ in range(self.steps):
            logits = self.forward(kept, ctx)
            if rewards is None:  # step 0: all views forward; the confident ones are kept
                selected = select_confident(logits.detach(), self.selection)
                kept, logits = views[selected], logits[selected]
                rewards = self.reward.reward_matrix(kept, self.labels)
            actions = top_k_actions(logits.detach(), self.sample_k)
            loss = reinforce_loss(logits, actions, rewards.gather(1, actions))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return self.forward(views[:1], ctx).softmax(-1)[0]
