"""What an audit finds, and the gate that stops ``migrate`` on what blocks it.

A finding is one problem with a stable id (the operator acknowledges it by that id in
the plan), a severity and the records it names. A tenant may hold millions of records,
so each finding keeps at most ``RECORDS_KEPT`` of them; its count is always exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adapters.errors import FatalError

Severity = Literal["info", "warning", "blocking"]
SEVERITIES: tuple[Severity, ...] = ("blocking", "warning", "info")
"""Most serious first: the order reports list findings in."""

RECORDS_KEPT = 1000
"""Records a finding lists (audit.json); its ``count`` covers every one."""


class AuditBlocked(FatalError):
    """Blocking findings the plan does not acknowledge: the run stops before any write,
    with the schema gate's exit code (the destination is not ready for this data)."""

    exit_code = 7


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A source record a finding names, and what about it (the value, the email…)."""

    collection: str
    source_id: str
    detail: str = ""


@dataclass(slots=True)
class Finding:
    """One problem, the records it concerns and what the operator should know."""

    id: str
    """Stable across runs of the same data: what ``[audit] acknowledge`` lists."""
    kind: str
    severity: Severity
    title: str
    explanation: str
    count: int = 0
    """Every record (or user, or schema part) concerned, not only those listed."""
    records: list[RecordRef] = field(default_factory=list)
    acknowledged: bool = False

    @property
    def blocks(self) -> bool:
        return self.severity == "blocking" and not self.acknowledged


class Findings:
    """Findings by id, built record by record with bounded memory."""

    def __init__(self, keep: int = RECORDS_KEPT) -> None:
        self.keep = keep
        self.by_id: dict[str, Finding] = {}

    def add(
        self,
        finding_id: str,
        kind: str,
        severity: Severity,
        title: str,
        explanation: str,
        record: RecordRef | None = None,
        count: int = 1,
    ) -> Finding:
        """Count ``count`` more under ``finding_id`` (created on first use), listing
        ``record`` while fewer than ``keep`` are listed."""
        found = self.by_id.get(finding_id)
        if found is None:
            found = self.by_id[finding_id] = Finding(finding_id, kind, severity, title, explanation)
        found.count += count
        if record is not None and len(found.records) < self.keep:
            found.records.append(record)
        return found

    def sorted(self) -> list[Finding]:
        """Blocking first, then warnings, then information; by id within each."""
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.by_id.values(), key=lambda f: (rank[f.severity], f.id))


@dataclass(slots=True)
class CollectionProfile:
    """How full one staged collection is."""

    records: int = 0
    filled: dict[str, int] = field(default_factory=dict)
    """Field (``custom_fields.<key>`` for a custom one) → records holding a value."""

    def fill_rate(self, name: str) -> float:
        return self.filled.get(name, 0) / self.records if self.records else 0.0


@dataclass(slots=True)
class AuditReport:
    """Everything the audit of one run's staging against one destination found."""

    run_id: str
    destination: str
    profile: dict[str, CollectionProfile]
    findings: list[Finding]
    acknowledged: tuple[str, ...] = ()
    """The plan's ``[audit] acknowledge``, as given."""

    @property
    def blocking(self) -> list[Finding]:
        """Blocking findings the plan does not acknowledge: what stops ``migrate``."""
        return [f for f in self.findings if f.blocks]

    @property
    def stale_acknowledgements(self) -> list[str]:
        """Acknowledged ids no finding has any more (fixed at the source, or mistyped)."""
        found = {f.id for f in self.findings}
        return [a for a in self.acknowledged if a not in found]

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


def acknowledge(findings: Iterable[Finding], acknowledged: Iterable[str]) -> None:
    """Mark the findings the plan acknowledges by id."""
    wanted = set(acknowledged)
    for f in findings:
        f.acknowledged = f.id in wanted


def gate(report: AuditReport, where: Path) -> None:
    """Stop the run (AuditBlocked, exit 7) on a blocking finding the plan does not
    acknowledge, naming each finding's id and the report that explains it."""
    blocking = report.blocking
    if not blocking:
        return
    ids = [f.id for f in blocking]
    shown = ", ".join(f"{f.id} ({f.count})" for f in blocking[:8])
    more = f" and {len(ids) - 8} more" if len(ids) > 8 else ""
    raise AuditBlocked(
        f"the audit of run {report.run_id} found {len(ids)} blocking finding(s) for "
        f"{report.destination}: {shown}{more}; nothing was written. Read {where}, fix them, "
        f'or acknowledge each in the plan: [audit] acknowledge = ["{ids[0]}", …]'
    )
