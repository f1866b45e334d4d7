"""What the queue writes to Redis is strict JSON: NaN and infinities (a diverged score) become
null, everything else is encoded as it is."""

import json
import math

from service.queue.schemas import dumps


def test_non_finite_floats_become_null_and_the_rest_is_unchanged():
    value = {"score": math.nan, "top_k": [{"label": "cat", "score": -math.inf}], "steps": 3, "ok": 0.25}
    assert dumps(value) == '{"score":null,"top_k":[{"label":"cat","score":null}],"steps":3,"ok":0.25}'
    finite = {"label": "\u732b", "metrics": {"compute_ms": 5.5, "changed": False, "kept": None}}
    assert json.loads(dumps(finite)) == finite
