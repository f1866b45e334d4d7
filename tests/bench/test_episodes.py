"""``tta bench episodes`` on the world's images: auto's sets, its documented JSON shape."""

import json

from service.cli.main import main
from world.glyphs import CLASS_NAMES


def test_bench_episodes_runs_auto_on_world_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    out = tmp_path / "episodes.json"
    code = main(["bench", "episodes", "--method", "auto", "--world", "sketch", "--batches", "1,3",
                 "--images", "6", "--json", str(out), "--model", "world-policy",
                 "--reward-model", "world-reward"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["method"] == "auto" and report["classes"] == len(CLASS_NAMES)
    assert report["images"] == "world sketch images" and report["n_views"] is None  # auto has no n_views
    assert [(row["B"], row["sets"]) for row in report["rows"]] == [(1, 6), (3, 2)]
    first = report["rows"][0]
    assert first["vs_B1"] == 1.0 and all(row["images_per_s"] > 0 for row in report["rows"])
    assert report["rows"][1]["vs_B1"] == round(report["rows"][1]["images_per_s"] / first["images_per_s"], 2)
    assert "world sketch images" in capsys.readouterr().out
