"""The approval of a sample: the mapping's fingerprint, ``crmlift approve`` and the gate a
full run with ``[migration] require_approved_sample`` passes.

The approval binds the mapping, not the data: ``mapping_fingerprint`` hashes what
decides a transform, and a full run starts only when a sample made with the same
fingerprint was approved.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from adapters.backdocket.client import BackDocketClient
from adapters.base import Record, Window, canonical_json, digest
from adapters.errors import ConfigError
from journal import Journal, open_journal
from journal.approvals import Approval, Samples
from ratelimit.governor import Governor
from service.context import staged
from service.extract import EPOCH
from service.pairs import Pair, pair_for
from service.plan import MigrationPlan

log = structlog.get_logger(__name__)

DEFAULT_SAMPLE = 200
"""Records a bare ``--sample`` loads (the issue's default)."""

MAPPING_PACKAGE = "service.mapping"


def mapping_fingerprint(
    pair: Pair, mapping: Mapping[str, Any], definitions: Sequence[Record]
) -> str:
    """What decides a transform, hashed: approve a sample, and this is what was approved.

    It covers the pair (source → destination), the plan's ``[mapping]`` table, the schema
    plan document built from the custom field definitions (ordered by id, so the order
    they were read in does not matter), and the source code of the pair's mapping modules
    (the transform's module and every ``service.mapping`` module it uses, transitively),
    so a code change to the mapping invalidates an approval. Data, quotas, URLs and
    batch sizes are not in it: a sample into a sandbox approves the run into production.
    """
    ordered = sorted(definitions, key=lambda d: str(d.get("id")))
    document = pair.schema_plan(ordered, mapping).document
    code = {
        name: hashlib.sha256(Path(str(module.__file__)).read_bytes()).hexdigest()
        for name, module in sorted(mapping_modules(pair).items())
    }
    facts = {
        "pair": f"backdocket→{pair.destination}",
        "mapping": dict(mapping),
        "schema_plan": hashlib.sha256(document).hexdigest(),
        "code": code,
    }
    return digest(canonical_json(facts))


def mapping_modules(pair: Pair) -> dict[str, ModuleType]:
    """The pair's transform module and the ``service.mapping`` modules it uses, by name."""
    found: dict[str, ModuleType] = {}
    todo = [pair.transform.__module__]
    while todo:
        name = todo.pop()
        module = sys.modules.get(name)
        if module is None or name in found:
            continue
        found[name] = module
        for value in vars(module).values():
            used = (
                value.__name__
                if isinstance(value, ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(used, str) and used.startswith(MAPPING_PACKAGE) and used not in found:
                todo.append(used)
    return found


async def read_definitions(plan: MigrationPlan) -> list[Record]:
    """The source's custom field definitions, read now: what a new run would stage."""
    async with BackDocketClient(plan.source, Governor(plan.source_quota)) as client:
        window = Window("custom_field_definitions", EPOCH, None)
        return [r async for page in client.pages(window, None) for r in page.records]


async def require_approved_sample(journal: Journal, plan: MigrationPlan, pair: Pair) -> str:
    """Refuse (ConfigError, exit 2) to start a full run without an approved sample made
    with the current mapping; returns the fingerprint it checked."""
    assert plan.destination is not None
    definitions = await read_definitions(plan)
    fingerprint = mapping_fingerprint(pair, plan.destination.mapping, definitions)
    approval = await Samples(journal.pool).approval(plan.name, fingerprint)
    if approval is None:
        where = plan.path or "plan.toml"
        raise ConfigError(
            f"migration {plan.name!r} requires an approved sample ([migration] "
            f"require_approved_sample) and none was approved for its current mapping "
            f"(fingerprint {fingerprint}): run `crmlift migrate --plan {where} --sample "
            f"{DEFAULT_SAMPLE}`, review its diff.html, then `crmlift approve --plan {where} "
            "--run SAMPLE_RUN_ID`"
        )
    log.info("sample.approved_mapping", run_id=approval.run_id, by=approval.approved_by,
             fingerprint=fingerprint)  # fmt: skip
    return fingerprint


async def approve(plan: MigrationPlan, run_id: str, by: str) -> Approval:
    """Journal the operator's approval of sample ``run_id`` with the mapping's fingerprint.

    Only a completed sample of this plan whose diff was written is approvable, and only
    while the mapping is the one it was checked with (else the approval would vouch for
    transforms nobody reviewed).
    """
    destination = plan.destination
    if destination is None:
        raise ConfigError("the plan has no [destination] table; there is no sample to approve")
    if not by.strip():
        raise ConfigError("approve needs who approves: --by NAME (or $USER)")
    pair = pair_for(destination.platform)
    async with open_journal(plan.journal) as journal:
        samples = Samples(journal.pool)
        run = await journal.runs.get(run_id)
        sample = await samples.get(run_id)
        if run.migration != plan.name or sample is None:
            raise ConfigError(
                f"run {run_id} is not a sample of migration {plan.name!r}; approve the run "
                f"`crmlift migrate --plan … --sample N` started"
            )
        if run.status != "completed" or sample.mapping_fingerprint is None:
            raise ConfigError(
                f"sample run {run_id} is {run.status}, not completed with its diff written; "
                f"finish it with `crmlift migrate --plan … --resume {run_id}`"
            )
        definitions = await staged(journal, run, "custom_field_definitions")
        now = mapping_fingerprint(pair, destination.mapping, definitions)
        if now != sample.mapping_fingerprint:
            raise ConfigError(
                f"the mapping changed since sample run {run_id} was checked (fingerprint "
                f"{sample.mapping_fingerprint} then, {now} now: the plan's [mapping], the "
                "custom field definitions or the mapping's code); run a new sample"
            )
        approval = await samples.approve(plan.name, run_id, now, by.strip())
        log.info("sample.approved", run_id=run_id, by=approval.approved_by, fingerprint=now)
        return approval
