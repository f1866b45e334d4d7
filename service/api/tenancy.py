"""Who may use what: the one place that decides it.

Every route reaches a tenant's resources through its ``Caller`` (the authenticated key's
tenant), never by building a key or reading an ``owner`` field itself. A resource of another
tenant is answered exactly as one that does not exist (404, the same message), so ids and
names cannot be probed. Listings show the caller's own resources, plus the shared ones every
tenant may use read-only: the deployment's base models and its bundled label sets.

Each kind of resource a tenant creates has a quota and a lifetime, declared in ``RESOURCES``
(``GET /v1/quotas`` shows the caller's usage against them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from contract.catalog import method_specs
from contract.errors import InvalidInputError, NotFoundError, QuotaExceededError
from contract.labels import LABEL_SET_NAME_PATTERN, validate_labels
from contract.names import split_version
from contract.state_scope import state_key_for
from service.api.state import AppState, app_state, owner_of
from service.queue.drift import DriftReport, read_reports
from service.queue.fields import JobField
from service.queue.keys import RECTIFICATION_LOG_MAXLEN, TrainingKeys
from service.queue.labelsets import SHARED_OWNER, LabelSet, decode
from service.queue.producer import JobView
from service.queue.schemas import FINISHED, JOB_ID_PATTERN, as_text, now_ms


@dataclass(frozen=True)
class ResourceKind:
    name: str
    quota: str
    """What bounds how many (or how much) one tenant may hold: the setting and its meaning."""
    lifetime: str
    """How long it is kept, or why it is kept until deleted."""


RESOURCES: tuple[ResourceKind, ...] = (
    ResourceKind("jobs", "TTA_MAX_INFLIGHT_PER_KEY unfinished jobs (429 beyond)",
                 "TTA_JOB_TTL_S after submission: images, events and results"),
    ResourceKind("label_sets", "TTA_MAX_LABEL_SETS_PER_KEY sets; per set TTA_MAX_EXEMPLARS_PER_LABEL_SET "
                 "exemplars (16 per class) in TTA_MAX_EXEMPLAR_BYTES_PER_LABEL_SET bytes",
                 "until deleted (DELETE /v1/label-sets/{name}): configuration, like a model"),
    ResourceKind("finetunes", "TTA_MAX_FINETUNES_PER_KEY unfinished; epochs x images at most "
                 "TTA_MAX_FINETUNE_IMAGE_EPOCHS each", "a job: TTA_JOB_TTL_S after submission"),
    ResourceKind("model_versions", "TTA_MAX_VERSIONS_PER_KEY registered versions",
                 "until deleted (DELETE /v1/models/{name}): label sets may point at them"),
    ResourceKind("retained_images", "per label set its retention's max_bytes; all of a key's sets "
                 "together at most TTA_MAX_RETAINED_BYTES_PER_KEY", "the retention's max_days"),
    ResourceKind("method_state", "TTA_MAX_METHOD_STATE_GROUPS_PER_KEY label sets' TDA caches "
                 "(the least recently updated goes first)",
                 "TTA_METHOD_STATE_TTL_S after its last update"),
    ResourceKind("drift", "TTA_MAX_DRIFT_SCOPES_PER_KEY label sets watched for input drift (answers on "
                 "others are not observed)", "TTA_DRIFT_TTL_S after the label set's last answer"),
    ResourceKind("rectifications", "the newest 100,000 MLLM decisions per key",
                 "TTA_RECTIFICATIONS_TTL_S after the last decision"),
)


@dataclass(frozen=True)
class Caller:
    """The tenant a request acts for, and the only way routes reach its resources."""

    owner: str
    state: AppState

    @property
    def client(self) -> Any:
        return self.state.producer.client

    # Jobs (classify jobs, label-set preparations, fine-tunes) -------------------------------

    async def job(self, job_id: str, *, kind: str | None = None, field: str = "job_id") -> JobView:
        """The caller's job (of ``kind``, if given); NotFoundError otherwise."""
        view = await self.state.producer.job(job_id) if JOB_ID_PATTERN.match(job_id) else None
        if view is None or view.owner != self.owner or (kind is not None and view.spec.kind != kind):
            what = "fine-tune" if kind == "finetune" else "job"
            raise NotFoundError(f"no {what} {job_id!r} (unknown, expired, or not yours)", field=field)
        return view

    # Label sets -------------------------------------------------------------------------------

    async def label_set(self, name: str, *, shared: bool = True, field: str = "label_set") -> LabelSet:
        """The caller's label set ``name``, else (``shared``) a bundled one of that name, which
        every tenant may use but not change; NotFoundError otherwise."""
        if LABEL_SET_NAME_PATTERN.match(name):
            for owner in (self.owner, SHARED_OWNER) if shared else (self.owner,):
                raw = await self.client.hgetall(self.state.keys.label_set(owner, name))
                if raw:
                    return decode(raw, owner)
        read_only = " (bundled label sets are read-only)" if not shared else ""
        raise NotFoundError(f"no label set {name!r} for this key{read_only}", field=field)

    async def label_set_names(self, owner: str | None = None) -> list[str]:
        index = await self.client.smembers(self.state.keys.label_set_index(owner or self.owner))
        return sorted(as_text(name) for name in index)

    async def label_sets(self) -> list[LabelSet]:
        """The caller's label sets, then the bundled ones it has none of the same name as."""
        own = await self.label_set_names()
        wanted = [*((self.owner, name) for name in own),
                  *((SHARED_OWNER, name) for name in await self.label_set_names(SHARED_OWNER)
                    if name not in own)]
        pipe = self.client.pipeline(transaction=False)  # one round trip for all
        for owner, name in wanted:
            pipe.hgetall(self.state.keys.label_set(owner, name))
        raws = await pipe.execute() if wanted else []
        return [decode(raw, owner) for (owner, _), raw in zip(wanted, raws, strict=True) if raw]

    async def require_room_for_label_set(self, name: str) -> None:
        """QuotaExceededError if creating ``name`` (not replacing it) passes the key's quota.
        (Checked, then written: two concurrent creations may pass it by one.)"""
        limit = self.state.settings.max_label_sets_per_key
        index = self.state.keys.label_set_index(self.owner)
        if not await self.client.sismember(index, name) and await self.client.scard(index) >= limit:
            raise QuotaExceededError(f"this key has {limit} label sets, its quota; delete one first "
                                     "(DELETE /v1/label-sets/{name})", field="name")

    async def delete_label_set(self, label_set: LabelSet) -> None:
        """One of the caller's label sets and everything kept for it."""
        keys, name = self.state.keys, label_set.name
        scope = state_key_for(self.owner, name, ())
        groups = [f"{spec.name}:{scope}" for spec in method_specs() if spec.stateful]
        doomed = [*keys.label_set_keys(self.owner, name, label_set.version),
                  *(key for group in groups for key in (keys.method_state(group),
                                                        keys.method_state_applied(group))),
                  keys.drift_reference(scope), keys.drift_window(scope)]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*doomed)
        pipe.srem(keys.label_set_index(self.owner), name)
        pipe.srem(keys.drift_index(self.owner), scope)
        await pipe.execute()

    async def require_room_for_retention(self, name: str, max_bytes: int) -> None:
        """QuotaExceededError if label set ``name`` retaining up to ``max_bytes`` would take the
        key's label sets past their joint bound (what a set retained stays until it ages out,
        so a set whose retention is off still counts)."""
        budget = self.state.settings.max_retained_bytes_per_key
        pipe = self.client.pipeline(transaction=False)  # one round trip for all
        for other in await self.label_set_names():
            if other != name:
                pipe.hget(self.state.keys.training(self.owner, other).retention, "max_bytes")
        others = sum(int(raw or 0) for raw in await pipe.execute())
        if others + max_bytes > budget:
            raise QuotaExceededError(
                f"this key's other label sets may retain {others} bytes; with {max_bytes} more it "
                f"would pass its quota of {budget}: lower max_bytes", field="max_bytes")

    def training_keys(self, label_set: LabelSet) -> TrainingKeys:
        """Fine-tuning keys of one of the caller's own label sets."""
        assert label_set.owner == self.owner, "a shared label set has no training state"
        return self.state.keys.training(self.owner, label_set.name)

    # Model versions ---------------------------------------------------------------------------

    async def versions(self) -> dict[str, dict[str, Any]]:
        """The caller's fine-tuned model versions: name -> manifest."""
        raw = await self.client.hgetall(self.state.keys.versions(self.owner))
        return {as_text(name): json.loads(manifest) for name, manifest in raw.items()}

    async def version(self, name: str, field: str = "model") -> dict[str, Any]:
        manifest = await self.client.hget(self.state.keys.versions(self.owner), name)
        if manifest is None:
            raise NotFoundError(f"no model version {name!r} for this key (GET /v1/models lists "
                                "yours)", field=field)
        return dict(json.loads(manifest))

    async def unfinished_finetunes(self) -> list[str]:
        """The caller's fine-tunes not finished yet (finished and expired ones are forgotten)."""
        index = self.state.keys.finetunes(self.owner)
        ids = [as_text(i) for i in await self.client.zrange(index, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.state.keys.job(job_id), JobField.STATUS)
        statuses = [as_text(s) if s is not None else None for s in await pipe.execute()] if ids else []
        ended = [i for i, status in zip(ids, statuses, strict=True) if status in (None, *FINISHED)]
        if ended:
            await self.client.zrem(index, *ended)
        return [i for i in ids if i not in ended]

    async def reserve_finetune(self, job_id: str) -> None:
        """Count a new fine-tune against the key's quotas: unfinished fine-tunes, and the model
        versions they will register (QuotaExceededError when either is used up)."""
        settings = self.state.settings
        unfinished = await self.unfinished_finetunes()
        if len(unfinished) >= settings.max_finetunes_per_key:
            raise QuotaExceededError(
                f"this key has {len(unfinished)} unfinished fine-tunes, its quota; wait for one to "
                "finish or cancel it (DELETE /v1/finetunes/{id})", field="label_set")
        versions = await self.client.hlen(self.state.keys.versions(self.owner))
        if versions + len(unfinished) >= settings.max_versions_per_key:
            raise QuotaExceededError(
                f"this key has {versions} model versions and {len(unfinished)} fine-tunes under way; "
                f"at most {settings.max_versions_per_key} versions: delete one first "
                "(DELETE /v1/models/{name})", field="label_set")
        await self.client.zadd(self.state.keys.finetunes(self.owner), {job_id: now_ms()})

    async def usage(self) -> list[dict[str, Any]]:
        """Each kind of resource: how much the caller holds, its quota, and its lifetime."""
        settings, keys = self.state.settings, self.state.keys
        names = await self.label_set_names()
        retained = [keys.training(self.owner, name) for name in names]
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(keys.inflight(self.owner))
        pipe.hlen(keys.versions(self.owner))
        pipe.zcard(keys.method_state_index(self.owner))
        pipe.xlen(keys.rectifications(self.owner))
        pipe.scard(keys.drift_index(self.owner))
        for training in retained:
            pipe.get(training.bytes)
        inflight, versions, groups, decisions, drift_scopes, *stored = await pipe.execute()
        used = {"jobs": (inflight, settings.max_inflight_per_key),
                "label_sets": (len(names), settings.max_label_sets_per_key),
                "finetunes": (len(await self.unfinished_finetunes()), settings.max_finetunes_per_key),
                "model_versions": (versions, settings.max_versions_per_key),
                "retained_images": (sum(int(b or 0) for b in stored), settings.max_retained_bytes_per_key),
                "method_state": (groups, settings.max_method_state_groups_per_key),
                "drift": (drift_scopes, settings.max_drift_scopes_per_key),
                "rectifications": (decisions, RECTIFICATION_LOG_MAXLEN)}
        return [{"resource": kind.name, "used": used[kind.name][0], "limit": used[kind.name][1],
                 "quota": kind.quota, "lifetime": kind.lifetime} for kind in RESOURCES]

    # State kept per label set (TDA's caches, drift) --------------------------------------------

    def scope(self, label_set: str | None, labels: Sequence[str] | None) -> str:
        """The caller's scope a reset names (``contract.state_scope``): a label set by name, or
        inline labels as its requests gave them; InvalidInputError unless exactly one is given
        and it is valid."""
        if (label_set is None) == (labels is None):
            raise InvalidInputError("give either label_set or labels", field="label_set")
        if label_set is not None and not LABEL_SET_NAME_PATTERN.match(label_set):
            raise InvalidInputError(f"label_set must match {LABEL_SET_NAME_PATTERN.pattern}",
                                    field="label_set")
        return state_key_for(self.owner, label_set, validate_labels(labels) if labels is not None else ())

    # Input drift (service.queue.drift) -------------------------------------------------------

    async def drift(self) -> list[tuple[str, DriftReport]]:
        """The caller's watched label sets (by name, or by the digest of inline labels) with
        their reports; scopes whose lists expired are forgotten."""
        keys = self.state.keys
        scopes = sorted(as_text(s) for s in await self.client.smembers(keys.drift_index(self.owner)))
        reports = await read_reports(self.client, keys, scopes, self.state.settings.drift_limits)
        gone = [s for s, r in zip(scopes, reports, strict=True) if r.reference_n == 0 and r.window_n == 0]
        if gone:
            await self.client.srem(keys.drift_index(self.owner), *gone)
        return [(scope.partition("|")[2], r) for scope, r in zip(scopes, reports, strict=True)
                if scope not in gone]

    async def reset_drift(self, scope: str) -> bool:
        """Forget the drift lists of one of the caller's scopes (``scope``): its next answers
        form a new reference."""
        keys = self.state.keys
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.drift_reference(scope), keys.drift_window(scope))
        pipe.srem(keys.drift_index(self.owner), scope)
        dropped, _ = await pipe.execute()
        return bool(dropped)

    async def model(self, name: str | None, field: str = "model") -> str | None:
        """A request's ``model``: a base model any tenant may name (whether a worker serves it
        is checked at admission), or a fine-tuned version, which must be the caller's."""
        if name is None:
            return None
        try:
            _, version = split_version(name)
        except ValueError:
            return name  # not a version name: a base model name, refused at admission if unserved
        if version is not None:
            await self.version(name, field)
        return name


def caller(request: Request) -> Caller:
    """The authenticated tenant of the request (UnauthorizedError without a valid key)."""
    state = app_state(request)
    return Caller(owner_of(request), state)
