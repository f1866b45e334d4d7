"""The fine-tune bench's label cache: a pool of n images starts with the pool of any smaller n,
so a cache serves a prefix and is extended by labelling only the new images."""

import numpy as np

from bench.finetune import cached_labels, shifted_pool


def test_a_larger_pool_starts_with_the_smaller_one():
    small, large = shifted_pool(12), shifted_pool(40)
    pairs = zip(small[0], large[0][:12], strict=True)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs)
    assert small[1] == large[1][:12] and small[2] == large[2][:12]
    assert len(set(large[2][:5])) == 5  # every prefix covers the shifted domains round-robin


def test_the_cache_serves_a_prefix_and_extends_from_where_it_stopped(tmp_path):
    path = str(tmp_path / "labels.json")
    calls: list[tuple[int, int]] = []

    def labeller(n: int):
        def compute(first: int):
            calls.append((first, n))
            return list(range(first, n)), [0.5] * (n - first), 10.0
        return compute

    assert cached_labels(path, "rlcf-tune", 3, labeller(3))[0] == [0, 1, 2]
    assert cached_labels(path, "rlcf-tune", 5, labeller(5))[0] == [0, 1, 2, 3, 4]
    assert cached_labels(path, "rlcf-tune", 4, labeller(4))[0] == [0, 1, 2, 3]
    assert calls == [(0, 3), (3, 5)]  # the prefix came from the cache
    assert cached_labels(path, "truth", 2, labeller(2))[0] == [0, 1]  # another source starts over
    assert calls[-1] == (0, 2)


def test_an_mllm_source_labels_with_the_bench_label_set():
    """``--source mllm``: the labeller runs DICL with the accuracy bench's exemplars (without a
    label set the mllm method refuses to run) and the world MLLM rectifies some of the policy's
    labels on the shifted pool."""
    from adapters.engine import Engine, load_models
    from bench.finetune import label_images
    from bench.mllm import load_bench_scorer

    images, truth, _ = shifted_pool(20)
    engine = Engine(load_models("world-policy", None, device="cpu", mllm=load_bench_scorer(None)))
    rectified, scores, _ = label_images(engine, "mllm:draws=1", images, truth, False)
    zeroshot, _, _ = label_images(engine, "zeroshot", images, truth, False)
    assert len(rectified) == len(scores) == 20
    assert rectified != zeroshot
    right = np.array(truth)
    assert (np.array(rectified) == right).sum() > (np.array(zeroshot) == right).sum()
