"""``tta bench accuracy --quick`` writes the documented JSON shape (and a chart)."""

import json

import pytest

from contract.method_options import AutoOptions
from service.cli.main import main
from world.glyphs import CLASS_NAMES
from world.render import TEST_DOMAINS


def test_bench_json_shape(tmp_path, monkeypatch, capsys):
    """One scene per class and domain (the smallest run that fills every row): what ``--quick``
    writes, in half its time."""
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    out, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    pareto, reliability = tmp_path / "pareto.png", tmp_path / "reliability.png"
    code = main(["bench", "accuracy", "--n-per-class", "1", "--no-progress", "--json", str(out),
                 "--plot", str(chart), "--pareto", str(pareto), "--reliability", str(reliability),
                 "--model", "world-policy", "--reward-model", "world-reward"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"model", "reward_model", "split", "n_per_domain", "results"}
    assert report["model"] == "world-policy" and report["reward_model"] == "world-reward"
    assert report["split"] == "test"
    assert report["n_per_domain"] == len(CLASS_NAMES)
    methods = {"zeroshot", "zero", "tda", "tpt", "rlcf", "rlcf-tune", "auto"}
    assert {(r["method"], r["domain"]) for r in report["results"]} == {
        (m, d) for m in methods for d in TEST_DOMAINS}
    for row in report["results"]:
        assert set(row) == {"method", "domain", "accuracy", "ece", "ms_per_image", "ms_mean", "answered_by",
                            "reliability"}
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["ece"] <= 1.0
        assert row["ms_per_image"] > 0 and row["ms_mean"] > 0
        assert sum(n for _, _, n in row["reliability"]) == len(CLASS_NAMES)
        hits = sum(round(accuracy * n) for _, accuracy, n in row["reliability"])
        assert hits == round(row["accuracy"] * len(CLASS_NAMES))
        if row["method"] == "auto":  # every image answered by one of its tiers
            assert sum(row["answered_by"].values()) == len(CLASS_NAMES)
            assert set(row["answered_by"]) <= {"zeroshot", *AutoOptions.tiers.split(",")}
        else:
            assert row["answered_by"] is None
    for png in (chart, pareto, reliability):
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "shifted avg" in printed and "mean ms / image" in printed and "the tier that answered" in printed


def test_bench_method_variants_override_options():
    from bench.runs import parse_variant

    assert parse_variant("rlcf") == ("rlcf", {})
    assert parse_variant("rlcf:steps=10+lr=0.01") == ("rlcf", {"steps": 10, "lr": 0.01})
    assert parse_variant("rlcf-tune:params=all") == ("rlcf-tune", {"params": "all"})


def test_variants_with_commas_are_separated_by_semicolons():
    from bench.accuracy import split_variants

    assert split_variants("tda, rlcf:steps=10,") == ["tda", "rlcf:steps=10"]
    assert split_variants("tda; auto:tiers=tda,rlcf:steps=10+threshold=0.7") == \
        ["tda", "auto:tiers=tda,rlcf:steps=10+threshold=0.7"]


def test_the_validation_split_samples_other_images(tmp_path, monkeypatch):
    """Defaults are chosen on the validation seeds: a run there says so, and its images are not
    the test seeds' (zero-shot's answers on them differ)."""
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    reports = {}
    for split in ("test", "validation"):
        out = tmp_path / f"{split}.json"
        assert main(["bench", "accuracy", "--split", split, "--n-per-class", "1", "--no-progress",
                     "--methods", "zeroshot;auto:tiers=tda+threshold=0.9", "--json", str(out),
                     "--model", "world-policy", "--reward-model", "none"]) == 0
        reports[split] = json.loads(out.read_text())
    assert reports["validation"]["split"] == "validation"
    rows = {split: {(r["method"], r["domain"]): r for r in report["results"]}
            for split, report in reports.items()}
    assert set(rows["validation"]) == {(m, d) for m in ("zeroshot", "auto:tiers=tda+threshold=0.9")
                                       for d in TEST_DOMAINS}
    assert [rows["test"][k]["reliability"] for k in sorted(rows["test"])] != \
        [rows["validation"][k]["reliability"] for k in sorted(rows["validation"])]


def test_bench_rejects_a_bad_variant_before_running(monkeypatch, capsys):
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    code = main(["bench", "accuracy", "--quick", "--no-progress", "--methods", "rlcf:stepz=3",
                 "--model", "tta-tiny:random", "--reward-model", "tta-tiny-reward:random"])
    assert code == 2 and "stepz" in capsys.readouterr().err


def test_bench_mllm_reports_what_the_rectification_did(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTA_DEVICE", "cpu")
    out = tmp_path / "bench.json"
    code = main(["bench", "accuracy", "--n-per-class", "1", "--no-progress", "--json", str(out),
                 "--methods", "zeroshot,mllm:n_candidates=3+draws=1", "--model", "world-policy",
                 "--reward-model", "none"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["mllm"]["scorer"] == "world-mllm"  # a bundled model by its name, not its path
    rows = {(r["method"], r["domain"]): r for r in report["results"]}
    stats = report["mllm"]["stats"]
    assert [s["domain"] for s in stats] == list(TEST_DOMAINS)
    n = len(CLASS_NAMES)
    for s in stats:
        assert set(s) == {"method", "domain", "accuracy", "zeroshot_accuracy", "calls_per_image",
                          "gate_kept", "changed", "changed_right", "changed_wrong", "broke"}
        assert s["accuracy"] == rows[(s["method"], s["domain"])]["accuracy"]
        # the method's zero-shot guess is the zeroshot method's answer on the same images
        assert s["zeroshot_accuracy"] == rows[("zeroshot", s["domain"])]["accuracy"]
        assert 1.0 <= s["calls_per_image"] <= 3.0  # the gate (r = 1), at most n x r = 3
        # kept images cost one call, the others three
        assert s["calls_per_image"] == pytest.approx(1 + 2 * (1 - s["gate_kept"]), abs=0.01)
        assert s["changed_right"] + s["changed_wrong"] == round(s["changed"] * n)
        assert s["broke"] <= s["changed_wrong"]
        # accuracy moves by exactly the labels changed to right minus those broken
        assert round((s["accuracy"] - s["zeroshot_accuracy"]) * n) == s["changed_right"] - s["broke"]
    assert "gate kept" in capsys.readouterr().out


@pytest.mark.parametrize("domain", ["clean", "sketch"])
def test_the_mllm_alone_classifies_as_its_eyes_and_names_allow(domain):
    """``mllm-alone``: every class asked, no exemplars, no CLIP. The world MLLM sees through the
    reward CLIP's tower but knows 13 of the 25 class names (the rest are its long tail, which
    only exemplars teach it). On validation, one scene per class: 52% on clean and on sketch
    (the policy's zero-shot on sketch: 9%), so the row must show both the eyes and the gap."""
    from bench.mllm import MLLM_ALONE, evaluate_mllm_alone, load_bench_scorer
    from world.data import VALIDATION_SEEDS

    calls = []
    row = evaluate_mllm_alone(load_bench_scorer(None), domain, 1, lambda: calls.append(1),
                              seed_base=VALIDATION_SEEDS)
    assert row.method == MLLM_ALONE and row.domain == domain
    assert len(calls) == len(CLASS_NAMES)  # one progress tick per image
    assert row.accuracy >= 0.45, row  # most of the 13 scenes whose names it knows
    assert row.accuracy <= 0.7, row  # not 5 of the 12 long-tail scenes (chance: 1 of 12 each)
    assert 0.0 <= row.ece <= 1.0
