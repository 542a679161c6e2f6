"""The reports an operator hands the firm: owners.md says who matched, and on which
email, as well as who fell back to the fallback owner and why."""

from __future__ import annotations

from pathlib import Path

from service.reports.migrate import MigrateReport, write_migrate_report


def test_owners_md_lists_who_matched_by_which_email_and_who_fell_back(tmp_path: Path) -> None:
    report = MigrateReport(
        run_id="r1",
        destination="salesforce",
        rows=[],
        failures=[],
        owners_matched=2,
        owners_matches=[
            {"user_id": "usr_2", "email": "Bo@Firm.example", "destination_user": "005B"},
            {"user_id": "usr_1", "email": "ada@firm.example", "destination_user": "005A"},
        ],
        owners_fell_back=[
            {"user_id": "usr_3", "name": "Cy", "email": None, "reason": "no email in BackDocket"}
        ],
    )
    paths = write_migrate_report(report, tmp_path)
    owners = (tmp_path / "owners.md").read_text()
    assert tmp_path / "owners.md" in paths
    assert "2 BackDocket users matched a destination user by email; 1 fell back" in owners
    matched = owners.split("## Matched")[1].split("## Fell back")[0]
    assert matched.index("| usr_1 | ada@firm.example | 005A |") < matched.index(
        "| usr_2 | Bo@Firm.example | 005B |"
    )
    assert "| usr_3 | Cy |  | no email in BackDocket |" in owners.split("## Fell back")[1]
