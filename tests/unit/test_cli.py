"""``tta classify`` as a user runs it: one real subprocess through the console entry point,
the rest in-process through the same ``main()`` (importing torch per case costs seconds)."""

import json
import subprocess
import sys

import pytest

from service.cli.main import main
from tests.conftest import POLICY, REWARD, make_image

LABEL_ARG = "red ball,blue car,green tree"


@pytest.fixture(autouse=True)
def tiny_models(monkeypatch):
    monkeypatch.setenv("TTA_MODEL", POLICY)
    monkeypatch.setenv("TTA_REWARD_MODEL", REWARD)
    monkeypatch.setenv("TTA_DEVICE", "cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    good = folder / "good.png"
    make_image(5).save(good)
    bad = folder / "notes.png"
    bad.write_text("this is not an image")
    return good, bad


def test_subprocess_unreadable_file_is_named_and_others_still_processed(images):
    good, bad = images
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli.main", "classify", str(bad), str(good),
         "--labels", LABEL_ARG, "--method", "tpt", "--option", "n_views=16"],
        capture_output=True, text=True, timeout=300,
        env={"TTA_MODEL": POLICY, "TTA_REWARD_MODEL": REWARD, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "other images are still processed" in proc.stderr
    assert "good.png" in proc.stdout and "ERROR" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("method", ["zeroshot", "tpt", "rlcf", "rlcf-tune"])
def test_classify_json_for_every_method(images, capsys, method):
    good, _ = images
    options = [] if method == "zeroshot" else ["--option", "n_views=16"]
    code = main(["classify", str(good), "--labels", LABEL_ARG, "--method", method,
                 "--top-k", "2", "--json", *options])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    (result,) = out["results"]
    assert result["label"] in LABEL_ARG.split(",")
    assert len(result["top_k"]) == 2 and result["method"] == method
    assert out["model"] == POLICY


@pytest.mark.parametrize(("args", "message"), [
    (["--labels", "cat,cat"], "duplicate label"),
    (["--labels", "cat,dog", "--method", "magic"], "allowed: zeroshot, zero, tda, tpt, rlcf, rlcf-tune"),
    (["--labels", "cat,dog", "--model", "ViT-Nope:random"], "no open_clip architecture"),
    (["--labels", "cat,dog", "--method", "rlcf", "--reward-model", "none"], "needs a reward model"),
    (["--labels-file", "/nonexistent/labels.txt"], "cannot read labels file"),
    (["--labels", "cat,dog", "--option", "steps"], "not KEY=VALUE"),
])
def test_bad_arguments_exit_2_with_a_clear_message(images, capsys, args, message):
    good, _ = images
    assert main(["classify", str(good), *args]) == 2
    assert message in capsys.readouterr().err


def test_labels_file(images, capsys, tmp_path):
    good, _ = images
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n\ndog\nbird\n")
    assert main(["classify", str(good), "--labels-file", str(labels), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["label"] in ("cat", "dog", "bird")


def test_the_load_bench_reads_the_apis_own_time_from_server_timing():
    from bench.load import server_timing_ms

    assert server_timing_ms("app;dur=12.34") == 12.34
    assert server_timing_ms('db;dur=1.5, app;dur=7.00;desc="api"') == 7.0
    missing = server_timing_ms("cache;desc=hit")
    assert missing != missing  # NaN: such samples are left out of the API's figures
