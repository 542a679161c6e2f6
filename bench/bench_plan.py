"""The plan every Salesforce benchmark migrates with: a BackDocket simulator's tenant into
a Salesforce simulator, on a journal of the bench's own work directory. Not a benchmark
itself (``./dev bench`` runs the others); they import it from beside them."""

from __future__ import annotations

from pathlib import Path

from service.plan import MigrationPlan, parse_plan

ADMIN = "admin@bench-firm.example"
"""The org's admin and the fallback owner of every bench org."""
SOURCE_SECRET_ENV = "BENCH_BD_SECRET"
ORG_SECRET_ENV = "BENCH_SF_SECRET"


def salesforce_plan(
    name: str,
    work: Path,
    source_url: str,
    org_url: str,
    source_rate: float,
    env: dict[str, str],
    *,
    files: bool = True,
    ca_file: Path | None = None,
) -> MigrationPlan:
    """Migration ``name`` from the tenant at ``source_url`` into the org at ``org_url``,
    reading the source at ``source_rate`` requests/s."""
    destination: dict[str, object] = {
        "platform": "salesforce", "login_url": org_url, "client_id": "crmlift",
        "client_secret": {"env": ORG_SECRET_ENV}, "fallback_owner_email": ADMIN,
    }  # fmt: skip
    if ca_file is not None:
        destination["ca_file"] = str(ca_file)
    raw = {
        "migration": {"name": name, "output_dir": str(work / "out")},
        "source": {"platform": "backdocket", "base_url": source_url, "client_id": "crmlift",
                   "client_secret": {"env": SOURCE_SECRET_ENV},
                   "quota": {"rate": source_rate, "burst": source_rate * 2}},
        "extract": {"files": files},
        "destination": destination,
        "journal": {"data_dir": str(work / "data")},
    }  # fmt: skip
    return parse_plan(raw, env=env, base=work)
