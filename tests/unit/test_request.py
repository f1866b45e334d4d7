"""The one request object: normalised once where a request arrives, carried by its job in wire
form, read back by the worker as it was, grouped by what it asks, not how it was spelled."""

from dataclasses import asdict

import pytest

from contract.errors import InvalidOptionsError
from contract.request import MethodRequest, normalize
from service.queue.consumer import StartedJob
from service.queue.schemas import JobSpec
from service.worker.episodes import episode_groups, episode_key
from tests.conftest import LABELS


def job(request: dict, job_id: str = "j1", model: str | None = None) -> StartedJob:
    spec = JobSpec(job_id=job_id, owner="alice", model=model, request=request, n_images=1, created_ms=1,
                   deadline_ms=2)
    return StartedJob(spec=JobSpec.model_validate_json(spec.model_dump_json()), attempt=1, queue_ms=0.0,
                      done_images=frozenset())


def test_a_request_reads_back_from_its_wire_form_as_it_was():
    request = normalize("rlcf", LABELS, options={"preset": "reference", "steps": 2}, templates=["a {}."],
                        top_k=3, seed=7)
    again = job(request.wire()).request
    assert again == request
    assert asdict(again.options)["steps"] == 2 and again.options.ctx_init == request.options.ctx_init
    assert again.templates == ("a {}.",) and again.top_k == 3 and again.seed == 7


def test_equivalent_requests_share_an_episode_set_and_others_do_not():
    """Options left to their defaults, the default preset named, and every default spelled out
    are one request; a different step count, seed aside, is another."""
    spelled_out = asdict(normalize("tpt", LABELS).options)
    assert spelled_out["preset"] == "default" and len(spelled_out) > 5
    spellings = [{}, {"preset": "default"}, spelled_out]
    jobs = [job(normalize("tpt", LABELS, options=options, seed=seed).wire(), f"j{seed}")
            for seed, options in enumerate(spellings)]
    assert len({episode_key(j) for j in jobs}) == 1
    other = job(normalize("tpt", LABELS, options={"steps": spelled_out["steps"] + 1}).wire(), "j9")
    elsewhere = job(normalize("tpt", LABELS).wire(), "j8", model="world-policy@ft-1")
    groups = episode_groups([(j.spec.job_id, j) for j in [*jobs, other, elsewhere]])
    assert [[name for name, _ in group] for group in groups] == [["j0", "j1", "j2"], ["j9"], ["j8"]]


def test_a_job_queued_by_an_older_release_still_runs_or_fails_clearly():
    """Before this change a job spread its request over its fields, options raw."""
    legacy = {"job_id": "old", "owner": "alice", "method": "tpt", "labels": LABELS, "templates": "single",
              "top_k": 2, "options": {"preset": "reference"}, "seed": 4, "n_images": 1, "created_ms": 1,
              "deadline_ms": 2}
    started = StartedJob(spec=JobSpec.model_validate(legacy), attempt=1, queue_ms=0.0,
                         done_images=frozenset())
    assert started.spec.method == "tpt" and started.spec.labels == list(LABELS)
    assert started.request == normalize("tpt", LABELS, options={"preset": "reference"}, top_k=2, seed=4)
    broken = StartedJob(spec=JobSpec.model_validate({**legacy, "options": {"stepz": 1}}), attempt=1,
                        queue_ms=0.0, done_images=frozenset())
    with pytest.raises(InvalidOptionsError, match="stepz") as info:
        _ = broken.request
    assert info.value.field == "options.stepz"


def test_the_wire_form_spells_out_every_option():
    wire = normalize("rlcf", LABELS).wire()
    assert set(wire) == {"method", "options", "labels", "templates", "top_k", "seed"}
    assert wire["options"]["steps"] == 3 and wire["options"]["preset"] == "default"
    assert MethodRequest.from_wire(wire).wire() == wire
