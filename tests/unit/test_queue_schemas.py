"""What the queue writes to Redis is strict JSON: NaN and infinities (a diverged score) become
null, everything else is encoded as it is."""

import json
import math

from service.queue.schemas import dumps, parse_event


def test_non_finite_floats_become_null_and_the_rest_is_unchanged():
    value = {"score": math.nan, "top_k": [{"label": "cat", "score": -math.inf}], "steps": 3, "ok": 0.25}
    assert dumps(value) == '{"score":null,"top_k":[{"label":"cat","score":null}],"steps":3,"ok":0.25}'
    finite = {"label": "\u732b", "metrics": {"compute_ms": 5.5, "changed": False, "kept": None}}
    assert json.loads(dumps(finite)) == finite


def test_what_orjson_refuses_goes_through_the_standard_library():
    big = 2**70  # past 64 bits: orjson raises, the standard library writes it
    assert json.loads(dumps({"n": big, "x": math.inf})) == {"n": big, "x": None}


def test_events_parse_from_redis_fields_as_bytes_or_text():
    data = dumps({"job_id": "j", "image": 0, "final": True})
    for fields in ({b"event": b"result", b"data": data.encode()}, {"event": "result", "data": data}):
        event = parse_event(b"1-0", fields)
        assert (event.id, event.event, event.data, event.is_terminal) == (
            "1-0", "result", {"job_id": "j", "image": 0, "final": True}, True)
    assert parse_event("2-0", {}).event == "unknown"
