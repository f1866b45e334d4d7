"""A small Python client for the service: classify, submit, follow events (SSE), label sets.

    client = TTAClient("http://127.0.0.1:8000", api_key="tta_...")
    result = client.classify(["photo.jpg"], labels=["cat", "dog"], method="rlcf")
    for event in client.events(client.submit(["photo.jpg"], labels=["cat", "dog"])):
        print(event.event, event.data)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from service.queue.schemas import QueueEvent

ImageInput = bytes | str | Path


Event = QueueEvent
"""An event as the SSE stream carries it (id, event name, data)."""


class TTAClientError(Exception):
    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None = None) -> None:
        self.status = status
        self.code = str(body.get("code", "http_error"))
        self.message = str(body.get("message", body))
        self.field = body.get("field")
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.message}")


def _read(image: ImageInput) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    event_id, name = "", "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(id=event_id, event=name, data=json.loads("\n".join(data)))
            event_id, name, data = event_id, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


class TTAClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(timeout_s, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TTAClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text[:500]}
            raise TTAClientError(response.status_code, body, response.headers.get("Retry-After"))
        return response.json()

    @staticmethod
    def _form(images: Sequence[ImageInput], labels: Sequence[str] | None, label_set: str | None,
              method: str, top_k: int, options: dict[str, Any] | None,
              templates: str | list[str] | None, seed: int) -> tuple[list[Any], dict[str, Any]]:
        files = [("image", (f"image{i}", _read(image))) for i, image in enumerate(images)]
        data: dict[str, Any] = {"method": method, "top_k": str(top_k), "seed": str(seed)}
        if labels:
            data["labels"] = list(labels)  # repeated form fields
        if label_set:
            data["label_set"] = label_set
        if options:
            data["options"] = json.dumps(options)
        if templates is not None:
            data["templates"] = templates if isinstance(templates, str) else json.dumps(templates)
        return files, data

    def classify(self, images: Sequence[ImageInput], labels: Sequence[str] | None = None, *,
                 label_set: str | None = None, method: str = "zeroshot", top_k: int = 5,
                 options: dict[str, Any] | None = None, templates: str | list[str] | None = None,
                 seed: int = 0) -> dict[str, Any]:
        """Wait for the result; if the server's wait bound passes first, keep following the
        job's events until it finishes."""
        files, data = self._form(images, labels, label_set, method, top_k, options, templates, seed)
        response = self.http.post("/v1/classify", files=files, data=data)
        body = self._check(response)
        if response.status_code == 202:
            return self.wait(body["job_id"])
        return dict(body)

    def submit(self, images: Sequence[ImageInput], labels: Sequence[str] | None = None, *,
               label_set: str | None = None, method: str = "zeroshot", top_k: int = 5,
               options: dict[str, Any] | None = None, templates: str | list[str] | None = None,
               seed: int = 0) -> str:
        files, data = self._form(images, labels, label_set, method, top_k, options, templates, seed)
        return str(self._check(self.http.post("/v1/jobs", files=files, data=data))["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(f"/v1/jobs/{job_id}")))

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events until its last one; resumes after ``last_event_id``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for event in parse_sse(response.iter_lines()):
                yield event
                if event.is_terminal:
                    return

    def wait(self, job_id: str) -> dict[str, Any]:
        for event in self.events(job_id):
            if event.event == "error":
                raise TTAClientError(422, event.data)
        return self.job(job_id)

    def methods(self) -> list[dict[str, Any]]:
        return list(self._check(self.http.get("/v1/methods"))["methods"])

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200

    def create_label_set(self, name: str, labels: Sequence[str], *,
                         templates: str | list[str] | None = None,
                         exemplars: dict[str, Sequence[ImageInput]] | None = None) -> dict[str, Any]:
        files = [(f"exemplar:{label}", (f"{label}{i}", _read(image)))
                 for label, images in (exemplars or {}).items() for i, image in enumerate(images)]
        data: dict[str, Any] = {"name": name, "labels": list(labels)}
        if templates is not None:
            data["templates"] = templates if isinstance(templates, str) else json.dumps(templates)
        if not files:  # without files httpx would send a urlencoded form: use JSON instead
            body = {"name": name, "labels": list(labels), "templates": templates}
            return dict(self._check(self.http.post("/v1/label-sets", json=body)))
        return dict(self._check(self.http.post("/v1/label-sets", files=files, data=data)))

    def label_set(self, name: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(f"/v1/label-sets/{name}")))

    # Fine-tuning (POST /v1/finetunes and the label-set pointers) --------------------------

    def finetune(self, label_set: str, **body: Any) -> dict[str, Any]:
        """Start a fine-tune (body: source, changed_only, min_score, since_ms, until_ms,
        max_images, hyperparameters); follow it with ``events(result["finetune_id"])``."""
        return dict(self._check(self.http.post("/v1/finetunes", json={"label_set": label_set, **body})))

    def cancel_finetune(self, finetune_id: str) -> dict[str, Any]:
        return dict(self._check(self.http.delete(f"/v1/finetunes/{finetune_id}")))

    def set_retention(self, label_set: str, enabled: bool, **bounds: Any) -> dict[str, Any]:
        body = {"enabled": enabled, **bounds}
        return dict(self._check(self.http.put(f"/v1/label-sets/{label_set}/retention", json=body)))

    def point_label_set(self, label_set: str, model: str | None) -> dict[str, Any]:
        """Answer the label set with ``model`` (a version; None: the base); "rollback" instead
        returns to the previous pointer."""
        if model == "rollback":
            return dict(self._check(self.http.post(f"/v1/label-sets/{label_set}/model/rollback")))
        return dict(self._check(self.http.put(f"/v1/label-sets/{label_set}/model", json={"model": model})))
