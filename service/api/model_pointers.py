"""Which model version answers a label set's requests: the pointer, its history (rollback),
and resolving it when a classify job is submitted."""

from __future__ import annotations

from typing import Any

from service.api.state import AppState
from service.queue.keys import TrainingKeys
from service.queue.labelsets import SHARED_OWNER, LabelSet
from service.queue.schemas import as_text


async def pointer_view(state: AppState, tk: TrainingKeys, name: str) -> dict[str, Any]:
    client = state.producer.client
    current = await client.get(tk.model)
    history = [as_text(h) or None for h in await client.lrange(tk.model_history, 0, 9)]
    return {"label_set": name, "model": as_text(current) if current else None, "history": history}


async def move_pointer(state: AppState, tk: TrainingKeys, model: str | None) -> None:
    client = state.producer.client
    previous = await client.get(tk.model)
    pipe = client.pipeline(transaction=True)
    pipe.lpush(tk.model_history, previous if previous is not None else "")
    pipe.ltrim(tk.model_history, 0, 49)
    if model is None:
        pipe.delete(tk.model)
    else:
        pipe.set(tk.model, model)
    await pipe.execute()


async def pinned_model(state: AppState, label_set: LabelSet | None) -> str | None:
    """The model version a classify request on ``label_set`` is answered by (None: the base)."""
    if label_set is None or label_set.owner == SHARED_OWNER:  # (bundled sets point nowhere)
        return None
    value = await state.producer.client.get(state.keys.training(label_set.owner, label_set.name).model)
    return as_text(value) if value else None

