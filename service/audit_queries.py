"""The audit's checks across records, asked of PostgreSQL over the run's staging: emails
several records share, references to records staging does not hold, and company
hierarchies that loop.

The database does the joins and groupings, so memory stays flat however large the
tenant; only the company → parent pairs are read into memory, to walk the hierarchy.
Every query sees what the load sees: a staged record the source deleted since (its
deletion at or after its staged version, ``journal.staging``'s rule) is not there.
"""

from __future__ import annotations

from collections.abc import Mapping

from journal import Journal
from journal.runs import Run
from service.audit_findings import Findings, RecordRef

LIVE = """NOT EXISTS (SELECT 1 FROM source_deletions d
           WHERE d.run_id = {s}.run_id AND d.collection = {s}.collection
             AND d.source_id = {s}.source_id AND d.deleted_at >= {s}.updated_at)"""

REFERENCES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "companies": (("parent_company_id", "companies"),),
    "contacts": (("owner_id", "users"), ("company_links[].company_id", "companies")),
    "matters": (("assigned_attorney_id", "users"), ("client_company_id", "companies"),
                ("primary_contact_id", "contacts")),
    "matter_parties": (("matter_id", "matters"), ("contact_id", "contacts")),
    "claims": (("matter_id", "matters"),),
    "tasks": (("assignee_id", "users"), ("contact_id", "contacts"), ("matter_id", "matters")),
    "events": (("owner_id", "users"), ("contact_id", "contacts"), ("matter_id", "matters")),
    "documents": (("uploaded_by_id", "users"), ("contact_id", "contacts"),
                  ("matter_id", "matters")),
    "notes": (("author_id", "users"), ("contact_id", "contacts"), ("matter_id", "matters")),
    "esignature_requests": (("document_id", "documents"), ("matter_id", "matters")),
    "intake_submissions": (("converted_matter_id", "matters"), ("assigned_to_id", "users")),
}  # fmt: skip
"""Collection → (field or ``list[].key``, the collection it points at), from the BackDocket
contract (shared/sources/backdocket-api.md)."""

DUPLICATE_EMAILS = ("contacts", "users")
"""Collections whose records the destination tells apart by email: contacts (the seed's
de-duplication key) and users (owners match on it)."""


_ORPHANS = """
    SELECT s.source_id, s.payload->>$4 AS ref, count(*) OVER () AS total
    FROM staged_records s
    WHERE s.run_id = $1 AND s.collection = $2 AND {live_s}
      AND coalesce(s.payload->>$4, '') <> ''
      AND NOT EXISTS (SELECT 1 FROM staged_records t
                      WHERE t.run_id = $1 AND t.collection = $3
                        AND t.source_id = s.payload->>$4 AND {live_t})
    ORDER BY 1, 2 LIMIT {keep}"""
"""Records whose field $4 names a $3 record staging does not hold (live)."""

_ORPHANS_IN_LIST = """
    SELECT s.source_id, e.value->>$5 AS ref, count(*) OVER () AS total
    FROM staged_records s
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(s.payload->$4) = 'array'
                                            THEN s.payload->$4 ELSE '[]'::jsonb END) e
    WHERE s.run_id = $1 AND s.collection = $2 AND {live_s}
      AND coalesce(e.value->>$5, '') <> ''
      AND NOT EXISTS (SELECT 1 FROM staged_records t
                      WHERE t.run_id = $1 AND t.collection = $3
                        AND t.source_id = e.value->>$5 AND {live_t})
    ORDER BY 1, 2 LIMIT {keep}"""
"""The same for key $5 of each element of the list field $4 (``company_links[].company_id``)."""


async def duplicate_emails(journal: Journal, run: Run, findings: Findings) -> None:
    """Records of each ``DUPLICATE_EMAILS`` collection sharing an email (trimmed,
    lowercased), every one of each group named with the email."""
    for collection in DUPLICATE_EMAILS:
        singular = collection.rstrip("s")
        async with journal.pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor(
                f"""SELECT lower(btrim(s.payload->>'email')) AS email,
                           array_agg(s.source_id ORDER BY s.source_id) AS ids
                    FROM staged_records s
                    WHERE s.run_id = $1 AND s.collection = $2 AND {LIVE.format(s="s")}
                      AND coalesce(btrim(s.payload->>'email'), '') <> ''
                    GROUP BY 1 HAVING count(*) > 1 ORDER BY 1""",
                run.run_id,
                collection,
            ):
                for source_id in row["ids"]:
                    findings.add(
                        f"duplicate_email:{collection}", f"duplicate_{singular}_email",
                        "warning", f"{collection.capitalize()} sharing an email",
                        "Contacts: all load, listed for the firm to merge (the seed's "
                        "de-duplication key). Users: they map to one destination user.",
                        RecordRef(collection, source_id, row["email"]),
                    )  # fmt: skip


async def orphans(journal: Journal, run: Run, findings: Findings) -> None:
    """References (``REFERENCES``) to a record staging does not hold, live: one finding
    per referencing field, each record named with the id it points at."""
    for collection, refs in REFERENCES.items():
        for path, target in refs:
            head, _, key = path.partition("[].")
            query = (_ORPHANS_IN_LIST if key else _ORPHANS).format(
                live_s=LIVE.format(s="s"), live_t=LIVE.format(s="t"), keep=findings.keep
            )
            args = (run.run_id, collection, target, head, *((key,) if key else ()))
            rows = await journal.pool.fetch(query, *args)
            if not rows:
                continue
            finding = findings.add(
                f"orphan:{collection}.{path}", "orphan", "warning",
                f"{collection}.{path} points at {target} that do not exist",
                f"The {target} were deleted at the source or never existed: the lookup is "
                "left empty (or, where the destination requires it, the record fails with "
                "parent_missing).", count=0,
            )  # fmt: skip
            finding.count = int(rows[0]["total"])
            finding.records += [
                RecordRef(collection, r["source_id"], f"{target}/{r['ref']}") for r in rows
            ]


async def company_cycles(journal: Journal, run: Run, findings: Findings) -> None:
    """Companies whose parent chain comes back to themselves: the destination's
    hierarchy (Account.ParentId, parentaccountid) refuses a loop, so the audit names
    every member of each one."""
    parents: dict[str, str] = {}
    async with journal.pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(
            f"""SELECT s.source_id, s.payload->>'parent_company_id' AS parent
                FROM staged_records s
                WHERE s.run_id = $1 AND s.collection = 'companies' AND {LIVE.format(s="s")}
                  AND coalesce(s.payload->>'parent_company_id', '') <> ''""",
            run.run_id,
        ):
            parents[row["source_id"]] = row["parent"]
    for cycle in cycles(parents):
        shown = " → ".join([*cycle, cycle[0]])
        for member in cycle:
            findings.add(
                "company_parent_cycle", "company_parent_cycle", "warning",
                "Company hierarchies that loop",
                "Each company's parent chain comes back to itself; a CRM hierarchy cannot "
                "loop, so the load cannot set every parent link: decide which company is "
                "on top.", RecordRef("companies", member, shown),
            )  # fmt: skip


def cycles(parents: Mapping[str, str]) -> list[list[str]]:
    """Every cycle of a child → parent graph, each once, in parent order from its
    smallest id; a chain leading into a cycle is not part of it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    for start in sorted(parents):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in state:
            state[node] = 1
            path.append(node)
            node = parents.get(node)
        if node is not None and state.get(node) == 1:
            loop = path[path.index(node) :]
            first = loop.index(min(loop))
            found.append(loop[first:] + loop[:first])
        for member in path:
            state[member] = 2
    return found
