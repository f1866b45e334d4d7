"""The reward-model setting: one model name, or a weighted ensemble (torch-free).

    world-reward                                       one reward CLIP, weight 1
    ViT-L-14-336:openai*0.56+RN50x64:openai*0.17+ViT-L-14:openai*0.28
                                                       RLCF's published ensemble

Each member is ``NAME*WEIGHT`` and members are joined by ``+``; NAME is any model name
(``contract.names``). ``*`` appears in no model name and ``@`` stays free for NAME@VERSION.
A ``+`` inside a NAME is fine as long as it is not directly preceded by ``*WEIGHT``.
"""

from __future__ import annotations

import re

_MEMBER = re.compile(r"(?P<name>.+?)\*(?P<weight>\d+(?:\.\d*)?|\.\d+)(?:\+(?=.)|$)")


def parse_reward_spec(text: str) -> list[tuple[str, float]]:
    """[(model name, weight)]; ValueError naming what is wrong."""
    text = text.strip()
    if "*" not in text:
        if not text:
            raise ValueError("reward model name is empty")
        return [(text, 1.0)]
    members: list[tuple[str, float]] = []
    position = 0
    while position < len(text):
        match = _MEMBER.match(text, position)
        if match is None:
            raise ValueError(
                f"reward ensemble {text!r} is not NAME*WEIGHT+NAME*WEIGHT... "
                f"(problem at character {position})")
        name, weight = match["name"].strip(), float(match["weight"])
        if not name or "*" in name:
            raise ValueError(f"reward ensemble {text!r}: member {match.group(0)!r} has no model name")
        if weight <= 0:
            raise ValueError(f"reward ensemble {text!r}: weight of {name!r} must be positive")
        members.append((name, weight))
        position = match.end()
    return members
