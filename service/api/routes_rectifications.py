"""Export of the MLLM's label decisions (the rectification log) as JSON lines, for a later
fine-tuning job on the rectified labels."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from service.api.state import AppState
from service.api.tenancy import caller

router = APIRouter(prefix="/v1", tags=["label sets"])
PAGE = 500


async def _lines(state: AppState, owner: str, label_set: str | None,
                 changed_only: bool) -> AsyncIterator[str]:
    key = state.keys.rectifications(owner)
    start = "-"
    while True:
        entries = await state.producer.client.xrange(key, min=start, max="+", count=PAGE)
        for entry_id, fields in entries:
            entry = json.loads(fields[b"entry"])
            if (label_set is None or entry.get("label_set") == label_set) and (
                    not changed_only or entry.get("changed")):
                yield json.dumps({"id": entry_id.decode(), **entry}) + "\n"
        if len(entries) < PAGE:
            return
        start = "(" + entries[-1][0].decode()


@router.get("/rectifications", response_class=StreamingResponse, responses={
    200: {"content": {"application/x-ndjson": {}},
          "description": "One JSON object per MLLM decision: image digest, label set, before, after, "
                         "changed, gate score, candidate scores"}})
async def export_rectifications(
    request: Request,
    label_set: Annotated[str | None, Query(description="only this label set")] = None,
    changed_only: Annotated[bool, Query(description="only decisions that changed the label")] = False,
) -> StreamingResponse:
    """This key's rectification log (newest 100 000 decisions), oldest first, as JSONL."""
    who = caller(request)
    return StreamingResponse(_lines(who.state, who.owner, label_set, changed_only),
                             media_type="application/x-ndjson")
