"""A job's answer: classify results are laid out directly, everything else through the JobOut
model; both give what the model gives, and the response body is that JSON."""

import json

import pytest

from service.api.json_response import FastJSONResponse
from service.api.routes_jobs import job_out
from service.api.schemas import JobOut
from service.queue.producer import JobView
from service.queue.schemas import JobSpec, dumps, loads

TOP = [{"label": "kettle", "score": 0.9}, {"label": "cup", "score": 0.1}]
CLASSIFY_RESULT = {"label": "kettle", "score": 0.9, "top_k": TOP, "zeroshot_top_k": TOP[::-1],
                   "changed": True, "metrics": {"steps": 3, "compute_ms": 12.5, "queue_ms": 1.0}}


def view(kind: str, results: dict, n_images: int = 2) -> JobView:
    spec = JobSpec(job_id="a" * 32, kind=kind, owner="t", method="rlcf", labels=["kettle", "cup"],
                   n_images=n_images, created_ms=1, deadline_ms=2)
    stored = {index: loads(dumps(result)) for index, result in results.items()}  # as Redis holds it
    return JobView(job_id=spec.job_id, owner="t", status="running", spec=spec, attempts=1, worker="w",
                   error=None, results=stored)


def through_model(job: JobView) -> dict:
    results = [None] * job.spec.n_images
    for index, result in job.results.items():
        results[index] = {"image": index, **result}
    return JobOut(job_id=job.job_id, kind=job.spec.kind, status=job.status, method=job.spec.method,
                  n_images=job.spec.n_images, attempts=job.attempts, labels=job.spec.labels,
                  label_set=job.spec.label_set, results=results, error=job.error).model_dump()


def test_a_classify_answer_equals_the_models_and_is_its_json():
    job = view("classify", {1: CLASSIFY_RESULT})  # image 0 not finished yet
    out = job_out(job)
    assert out == through_model(job)
    assert out["results"][0] is None and out["results"][1]["image"] == 1
    assert json.loads(FastJSONResponse(out).body) == out


def test_results_of_another_shape_go_through_the_model_which_drops_unnamed_fields():
    odd = {**CLASSIFY_RESULT, "debug": "internal"}
    job = view("classify", {0: odd}, n_images=1)
    assert "debug" not in job_out(job)["results"][0]
    assert job_out(job) == through_model(job)
    finetune = {"model": "m@v1", "version": "v1", "base_model": "m", "parent": None, "label_set": "s",
                "manifest": {}, "metrics": {"steps": 1}}
    job = view("finetune", {0: finetune}, n_images=1)
    assert job_out(job) == through_model(job) and "parent" not in job_out(job)["results"][0]


def test_a_score_stored_as_null_is_not_laid_out_directly():
    diverged = {**CLASSIFY_RESULT, "score": float("nan")}  # stored as null by dumps
    job = view("classify", {0: diverged}, n_images=1)
    with pytest.raises(ValueError):  # the model refuses it, as before (workers fall back instead)
        job_out(job)
