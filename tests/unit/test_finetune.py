"""The fine-tuning routine: it learns the labels it is given, reports progress, can be
cancelled, and never touches the shared model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from adapters.finetune import FinetuneCancelled, finetune_visual
from contract.finetune_params import PAPER, FinetuneParams, params_from

LABELS = ("red ball", "blue car", "green tree")
COLOURS = ((230, 30, 30), (30, 30, 230), (30, 200, 30))
TEMPLATES = ("a photo of a {}.",)


def coloured(seed: int, label: int) -> Image.Image:
    """Noise with a large disc whose colour is the class: learnable from a few images."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((48, 48, 3)) * 60).astype("uint8"))
    x, y = int(rng.integers(0, 12)), int(rng.integers(0, 12))
    ImageDraw.Draw(image).ellipse((x, y, x + 34, y + 34), fill=COLOURS[label])
    return image


def dataset(n_per_class: int) -> tuple[list[Image.Image], list[int]]:
    pairs = [(coloured(100 * c + i, c), c) for i in range(n_per_class) for c in range(len(LABELS))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_learns_the_given_labels_on_a_copy(models):
    images, targets = dataset(8)
    before = {k: v.clone() for k, v in models.policy.clip.model.state_dict().items()}
    reports = []
    params = FinetuneParams(lr=1e-3, lr_min=1e-4, epochs=4, batch_size=8, holdout_fraction=0.25,
                            distill=0.0)
    outcome = finetune_visual(models.policy, images, targets, LABELS, TEMPLATES, params,
                              on_progress=reports.append)
    m = outcome.metrics
    assert (m["n_train"], m["n_holdout"]) == (18, 6)
    assert m["epoch_loss"][-1] < m["epoch_loss"][0] - 0.2, m["epoch_loss"]
    assert m["holdout_agreement_after"] > m["holdout_agreement_before"] + 0.3, m
    # Progress: a report before training, steps, and an agreement at each epoch end.
    assert reports[0].epoch == 0 and reports[0].holdout_agreement == m["holdout_agreement_before"]
    ends = [r for r in reports if r.holdout_agreement is not None][1:]
    assert [r.epoch for r in ends] == list(range(1, 5))
    assert ends[-1].step == ends[-1].total_steps == m["steps"] == 4 * 3
    # The shared model is bit-for-bit as before; the outcome's state differs from it.
    after = models.policy.clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in models.policy.clip.model.parameters())
    visual = models.policy.clip.model.visual.state_dict()
    assert set(outcome.visual_state) == set(visual)
    assert not torch.equal(outcome.visual_state["conv1.weight"], visual["conv1.weight"])


def test_mix_interpolates_towards_the_original(models):
    images, targets = dataset(3)
    full = finetune_visual(models.policy, images, targets, LABELS, TEMPLATES,
                           FinetuneParams(lr=1e-3, epochs=1, batch_size=4, holdout_fraction=0))
    half = finetune_visual(models.policy, images, targets, LABELS, TEMPLATES,
                           FinetuneParams(lr=1e-3, epochs=1, batch_size=4, holdout_fraction=0, mix=0.5))
    original = models.policy.clip.model.visual.conv1.weight
    expected = original + 0.5 * (full.visual_state["conv1.weight"] - original)
    assert torch.allclose(half.visual_state["conv1.weight"], expected, atol=1e-6)


def test_the_paper_learning_rate_barely_moves_a_small_model(models):
    images, targets = dataset(3)
    outcome = finetune_visual(models.policy, images, targets, LABELS, TEMPLATES,
                              params_from({**PAPER.to_dict(), "batch_size": 3}))
    original = models.policy.clip.model.visual.conv1.weight
    change = (outcome.visual_state["conv1.weight"] - original).abs().max().item()
    assert 0 < change < 1e-4


def test_cancellation_and_bad_input(models):
    images, targets = dataset(4)
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(FinetuneCancelled, match="step 2"):
        finetune_visual(models.policy, images, targets, LABELS, TEMPLATES,
                        FinetuneParams(batch_size=2), should_stop=stop_after_two)
    with pytest.raises(ValueError, match="target"):
        finetune_visual(models.policy, images, [5] * len(images), LABELS, TEMPLATES)
    with pytest.raises(ValueError, match="lr_min"):
        FinetuneParams(lr=1e-4, lr_min=1e-3).validate()


def test_hyperparameters_from_a_request_name_the_bad_key():
    assert params_from({"lr": 1, "epochs": 2}) == FinetuneParams(lr=1.0, epochs=2)
    for bad, match in (({"lr": "fast"}, "'lr' must be a float"),
                       ({"steps": 3}, "unknown hyperparameter 'steps'"),
                       ({"epochs": 2.5}, "'epochs' must be a int"), ({"mix": 0}, "mix"),
                       ({"epochs": True}, "'epochs' must be a int")):
        with pytest.raises(ValueError, match=match):
            params_from(bad)


def test_local_cli_finetune_writes_a_loadable_version(tmp_path, capsys):
    from models.loading import load_clip
    from service.cli.main import main

    images, targets = dataset(3)
    lines = []
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        image.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": str(tmp_path / f"{i}.png"), "label": LABELS[target]}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    code = main(["finetune", "start", "--data", str(tmp_path / "data.jsonl"), "--labels", ",".join(LABELS),
                 "--model", "tta-tiny:random", "--device", "cpu", "--store", str(tmp_path / "store"),
                 "--param", "epochs=1", "--param", "lr=0.001", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["n_images"] == 9
    tuned = load_clip(out["model"], "cpu", store_dir=tmp_path / "store")
    assert tuned.name == out["model"]
    assert main(["finetune", "start", "--data", str(tmp_path / "data.jsonl"), "--labels", "x,y",
                 "--model", "tta-tiny:random", "--store", str(tmp_path / "store")]) == 2
    assert main(["finetune", "start", "--data", str(tmp_path / "data.jsonl"), "--param", "steps=3",
                 "--model", "tta-tiny:random", "--store", str(tmp_path / "store")]) == 2


def test_distillation_keeps_the_original_predictions(models):
    import torch.nn.functional as F

    from adapters.views import clean_view

    images, targets = dataset(6)
    shuffled = [(t + 1) % len(LABELS) for t in targets]  # labels the model must move far to fit
    policy = models.policy
    views = torch.stack([clean_view(image, policy.clip.image_size) for image in images])
    text = policy.class_features(LABELS, TEMPLATES)

    def predictions(visual_state=None):
        visual = models.policy.clip.model.visual
        if visual_state is None:
            return policy.logits(policy.clip.encode_images(views), text).argmax(-1)
        import copy

        tuned = copy.deepcopy(visual)
        tuned.load_state_dict(visual_state)
        with torch.no_grad():
            feats = F.normalize(tuned(policy.clip.prepare(views)), dim=-1)
        return policy.logits(feats, text).argmax(-1)

    with torch.no_grad():
        original = predictions()
    kept = {}
    for distill in (0.0, 20.0):
        params = FinetuneParams(lr=1e-3, lr_min=1e-4, epochs=3, batch_size=6, holdout_fraction=0,
                                distill=distill)
        outcome = finetune_visual(policy, images, shuffled, LABELS, TEMPLATES, params)
        kept[distill] = float((predictions(outcome.visual_state) == original).float().mean())
    assert kept[20.0] > kept[0.0] + 0.2, kept


def test_a_diverged_or_worse_finetune_is_unsound():
    """The world policy at lr 1 without distillation: its loss turns NaN within a few steps,
    and the fine-tune raises instead of returning weights. Weights with a NaN, or held-out
    agreement fallen past the bound on enough held-out images, are unsound too."""
    from adapters.engine import load_models
    from adapters.finetune import FinetuneUnsound, check_sound
    from contract.finetune_params import MIN_HOLDOUT_TO_JUDGE

    policy = load_models("world-policy", None, device="cpu").policy
    images = [Image.new("RGB", (64, 64), (40 * i % 255, 80, 120)) for i in range(10)]
    with pytest.raises(FinetuneUnsound, match="loss became nan"):
        finetune_visual(policy, images, [i % 3 for i in range(10)], ["a", "b", "c"], ("a photo of a {}.",),
                        FinetuneParams(lr=1.0, lr_min=1.0, distill=0.0, epochs=5, batch_size=2,
                                       crop_scale_min=1.0))
    fine = {"w": torch.ones(3), "steps": torch.tensor(1)}
    check_sound(fine, 0.5, 0.45, MIN_HOLDOUT_TO_JUDGE, 0.1)  # within the bound
    check_sound(fine, 0.5, 0.1, MIN_HOLDOUT_TO_JUDGE - 1, 0.1)  # too few held out to judge
    with pytest.raises(FinetuneUnsound, match=r"fell from 0\.500 to 0\.300"):
        check_sound(fine, 0.5, 0.3, MIN_HOLDOUT_TO_JUDGE, 0.1)
    with pytest.raises(FinetuneUnsound, match="not finite"):
        check_sound({"w": torch.tensor([1.0, float("nan")])}, None, None, 0, 0.1)
    with pytest.raises(ValueError, match="seed"):
        params_from({"seed": -1})
    with pytest.raises(ValueError, match="seed"):
        params_from({"seed": 2**70})
