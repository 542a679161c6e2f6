"""The comparisons reconcile makes of one record read back: its links and owner, its
numeric fields' share of the totals, its file's content, and the seeded sample.

Pure but for ``blob_md5`` (reads the blob store): the destination is read by the
caller, in batches, and handed in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Generic, TypeVar

from adapters.base import FileFacts
from service.expected import Expected
from service.readback import same
from service.reports.reconcile import BrokenLink, FileProblem, ReconcileReport

T = TypeVar("T")

OWNER_FIELDS = frozenset({"ownerid"})
"""Owner lookups, compared case-insensitively (Salesforce ``OwnerId``, Dataverse
``ownerid``): the transform resolved them by email, not through the id map."""
MD5_CHUNK = 1024 * 1024


def check_links(report: ReconcileReport, e: Expected, held: Mapping[str, Any]) -> None:
    """Every lookup of ``e`` holds what the id map says, and its owner the resolved owner."""
    assert e.destination_id is not None
    for name, ref in e.links.items():
        report.links_checked += 1
        want, got = e.fields.get(name), held.get(name)
        if not same(want, got):
            target = f"{ref.collection}/{ref.source_id}"
            report.broken_links.append(
                BrokenLink(e.object, e.destination_id, e.external_id, name, got, want, target)
            )
    for name, want in e.fields.items():
        if name.lower() in OWNER_FIELDS and name not in e.links:
            report.links_checked += 1
            got = held.get(name)
            if not same(want, got):
                report.broken_links.append(
                    BrokenLink(e.object, e.destination_id, e.external_id, name, got, want,
                               "resolved owner")
                )  # fmt: skip


def add_totals(report: ReconcileReport, e: Expected, held: Mapping[str, Any]) -> None:
    """Add ``e``'s numeric fields (lookups and flags aside) to its object's totals."""
    for name, sent in e.fields.items():
        if isinstance(sent, bool) or not isinstance(sent, int | float) or name in e.links:
            continue
        total = report.total(e.object, name)
        total.records += 1
        total.expected += Decimal(str(sent))
        value = _decimal(held.get(name))
        if value is None:
            total.not_numbers += 1
        else:
            total.held += value


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def check_file(
    report: ReconcileReport, e: Expected, facts: FileFacts | None, md5: str | None
) -> None:
    """The file is there, of the size uploaded, and (where the platform keeps a
    checksum) of the same content as the blob, whose MD5 is ``md5`` (None: not read)."""
    assert e.destination_id is not None
    assert e.file is not None
    report.files_checked += 1
    name = e.file.filename

    def problem(kind: Any, expected: Any, held: Any) -> None:
        report.file_problems.append(
            FileProblem(kind, e.object, e.destination_id or "", e.external_id, name, expected,
                        held)
        )  # fmt: skip

    if facts is None:
        problem("absent", f"{e.file.size_bytes} bytes", None)
        return
    if facts.size_bytes is not None and facts.size_bytes != e.file.size_bytes:
        problem("size", e.file.size_bytes, facts.size_bytes)
        return
    if facts.md5 is not None and md5 is not None and md5 != facts.md5.lower():
        problem("checksum", md5, facts.md5)


def blob_md5(path: Path) -> str | None:
    """MD5 of a blob on disk, read in chunks; None when the blob store lacks it."""
    if not path.exists():
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(MD5_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class Reservoir(Generic[T]):
    """A uniform random sample of ``size`` items from a stream of unknown length
    (Algorithm R), seeded so a rerun samples the same records; memory is ``size``."""

    size: int
    rng: random.Random
    seen: int = 0
    items: list[T] = field(default_factory=list)

    def slot(self) -> int | None:
        """Count one more item; the index it takes in the sample, or None (not sampled)."""
        self.seen += 1
        if len(self.items) < self.size:
            return len(self.items)
        j = self.rng.randrange(self.seen)
        return j if j < self.size else None

    def put(self, index: int, item: T) -> None:
        if index == len(self.items):
            self.items.append(item)
        else:
            self.items[index] = item
