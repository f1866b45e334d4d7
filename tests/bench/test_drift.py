"""``tta bench drift`` writes its documented JSON shape, with the counts its streams imply."""

import json

from service.cli.main import main
from service.queue.drift import ALERT_THRESHOLD, DriftLimits


def test_bench_drift_counts_a_clean_stream_and_a_switch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    out = tmp_path / "drift.json"
    code = main(["bench", "drift", "--clean", "240", "--shifted", "40", "--domains", "sketch",
                 "--no-progress", "--json", str(out), "--model", "world-policy", "--reward-model", "none"])
    assert code == 0
    report = json.loads(out.read_text())
    limits = DriftLimits()
    assert (report["threshold"], report["reference_size"], report["window_size"]) == (
        ALERT_THRESHOLD, limits.reference_size, limits.window_size)
    clean = report["clean"]
    # a score from the request that fills the reference (the window is full long before) on
    assert clean["requests"] == 240 and clean["scored"] == 240 - limits.reference_size + 1
    assert 0 <= clean["alarms"] <= clean["scored"] and clean["max_score"] >= clean["p99_score"] >= 0
    (switch,) = report["switches"].values()
    assert set(report["switches"]) == {"sketch"}
    assert switch["requests_after_switch"] is None or 1 <= switch["requests_after_switch"] <= 40
    assert switch["max_score_after"] > 0
    assert "requests to alarm after the switch" in capsys.readouterr().out
