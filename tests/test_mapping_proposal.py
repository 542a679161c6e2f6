"""Before any record moves, the operator gets crmlift's proposed mapping, edits it, confirms
it, and the run loads exactly what the confirmed file says.

Real journal, real HTTP to the simulators (the world fixtures of the migrate tests). What
a proposal must cover is derived from the tenant's own custom field definitions and the
pair's value maps, never listed here.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import ConfigError
from service.approval import mapping_fingerprint
from service.mapping import backdocket_dynamics as dynamics
from service.mapping import backdocket_salesforce as salesforce
from service.mapping_confirm import confirm_mapping
from service.mapping_facts import pair_facts
from service.mapping_propose import propose_mapping
from service.migrate import run_migrate
from service.pairs import pair_for
from service.plan import MigrationPlan, parse_plan
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    World,
    crmlift,
    org_schema_edit,
    plan_toml,
    world,
)


def with_mapping_file(plan: MigrationPlan, file: Path, **extra: Any) -> MigrationPlan:
    """The world's plan, naming the mapping file (as the operator's plan.toml would)."""
    raw = {**plan.raw, "mapping": {**plan.raw.get("mapping", {}), "file": str(file), **extra}}
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": plan.journal.dsn or "",
           "CRMLIFT_DATA_DIR": str(plan.journal.data_dir)}  # fmt: skip
    return parse_plan(raw, env=env, base=file.parent)


def edit_entry(text: str, table: str, key: str, new: str) -> str:
    """Change ``to`` of entry ``key`` in ``[table]``, as an operator edits by hand."""
    start = text.index(f"[{table}]\n")
    pattern = re.compile(rf"^({re.escape(key)} = \{{ to = )([^,]+)(,)", re.MULTILINE)
    found = pattern.search(text, start)
    assert found is not None, f"{table}.{key} is in the proposal"
    return text[: found.start(2)] + new + text[found.end(2) :]


def assert_covers_the_tenant(plan: MigrationPlan, proposal: dict[str, Any], tenant: Any) -> None:
    """Every custom field has an entry with a destination field (unless the pair gives it
    none on purpose, with the reason); every value of every value map and every option of
    every custom picklist has a destination value."""
    assert plan.destination is not None
    definitions = tenant.records["custom_field_definitions"]
    facts = pair_facts(plan.destination, definitions)
    for d in definitions:
        entry = proposal["fields"][d["entity"]][d["key"]]
        if (d["entity"], d["key"]) in facts.not_deployed:
            assert entry["to"] == "", entry
            assert entry["how"], entry
        else:
            assert entry["to"].count(".") == 1, entry
            assert 0 < entry["confidence"] <= 1
        if d["type"] in ("picklist", "multi_picklist") and entry["to"]:
            mapped = proposal["values"][f"{d['entity']}.{d['key']}"]["map"]
            assert set(mapped) == set(d["options"])
    for vm in facts.value_maps:
        mapped = proposal["values"][vm.name]["map"]
        assert set(vm.default) <= set(mapped), vm.name
        assert all(e["to"] not in ("", None) and "confidence" in e for e in mapped.values())


async def test_a_proposal_for_the_dirty_tenant_maps_every_field_and_value_into_salesforce(
    world: World, tmp_path: Path
) -> None:
    proposal = await propose_mapping(world.plan, out=tmp_path / "mapping.toml")
    text = proposal.path.read_text(encoding="utf-8")
    assert text.startswith("# crmlift mapping")
    assert "How to edit" in text
    assert_covers_the_tenant(world.plan, tomllib.loads(text), world.tenant)
    # The unedited proposal is what crmlift already does: it confirms as it is.
    plan = with_mapping_file(world.plan, proposal.path)
    done = await confirm_mapping(plan, by="ops")
    assert plan.destination is not None
    assert done.fingerprint == plan.destination.mapping["mapping_file_fingerprint"]


async def test_a_proposal_for_the_dirty_tenant_maps_every_field_and_value_into_dataverse(
    dv_world: DvWorld, tmp_path: Path
) -> None:
    proposal = await propose_mapping(dv_world.plan, out=tmp_path / "mapping.toml")
    found = tomllib.loads(proposal.path.read_text(encoding="utf-8"))
    assert_covers_the_tenant(dv_world.plan, found, dv_world.tenant)
    # Option sets take numbers: each entry shows the option's label beside it.
    status = found["values"]["matter_status"]["map"]["open"]
    assert isinstance(status["to"], int)
    assert status["label"] == "Open"
    await confirm_mapping(with_mapping_file(dv_world.plan, proposal.path), by="ops")


async def test_confirm_refuses_a_field_the_destination_does_not_have(
    world: World, tmp_path: Path
) -> None:
    proposal = await propose_mapping(world.plan, out=tmp_path / "mapping.toml")
    text = proposal.path.read_text(encoding="utf-8")
    text = text.replace('to = "Contact.Date_Of_Birth__c"', 'to = "Contact.Birth_Day__c"')
    text = edit_entry(text, "values.matter_status.map", "open", '"Opened"')
    proposal.path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        await confirm_mapping(with_mapping_file(world.plan, proposal.path), by="ops")
    message = str(refused.value)
    assert "fields.contacts.cf_date_of_birth: Contact.Birth_Day__c does not exist" in message
    assert refused.value.exit_code == 2
    # Our own picklists are unrestricted: a new status value is the operator's to add.
    assert "matter_status" not in message


async def test_confirm_refuses_a_value_a_restricted_picklist_does_not_have(
    dv_world: DvWorld, tmp_path: Path
) -> None:
    proposal = await propose_mapping(dv_world.plan, out=tmp_path / "mapping.toml")
    text = edit_entry(proposal.path.read_text(encoding="utf-8"), "values.matter_status.map",
                      "open", "424242")  # fmt: skip
    proposal.path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"values\.matter_status\.map\.open: 424242 is not"):
        await confirm_mapping(with_mapping_file(dv_world.plan, proposal.path), by="ops")


async def gate_story(plan: MigrationPlan, file: Path, edited: str) -> MigrationPlan:
    """require_confirmed refuses the unconfirmed file, then the file changed after its
    confirm (naming both fingerprints and the command), and accepts it once confirmed."""
    plan = with_mapping_file(plan, file, require_confirmed=True)
    with pytest.raises(ConfigError, match="none was ever confirmed") as refused:
        await run_migrate(plan)
    assert "crmlift mapping confirm --plan" in str(refused.value)
    confirmed = await confirm_mapping(plan, by="ops")
    before = plan
    file.write_text(edited, encoding="utf-8")
    plan = with_mapping_file(plan, file, require_confirmed=True)
    assert plan.destination is not None
    assert before.destination is not None
    now = plan.destination.mapping["mapping_file_fingerprint"]
    with pytest.raises(ConfigError) as changed:
        await run_migrate(plan)
    assert now in str(changed.value)
    assert confirmed.fingerprint in str(changed.value)
    # The edit invalidates an approved sample too: the approval's fingerprint moved.
    pair = pair_for(plan.destination.platform)
    assert mapping_fingerprint(pair, plan.destination.mapping, []) != mapping_fingerprint(
        pair, before.destination.mapping, []
    )
    await confirm_mapping(plan, by="ops")
    return plan


async def test_an_edited_matter_status_in_the_confirmed_file_lands_in_salesforce(
    world: World, tmp_path: Path
) -> None:
    proposal = await propose_mapping(world.plan, out=tmp_path / "mapping.toml")
    edited = edit_entry(proposal.path.read_text(encoding="utf-8"), "values.matter_status.map",
                        "open", '"Pending"')  # fmt: skip
    plan = await gate_story(world.plan, proposal.path, edited)
    await run_migrate(plan)
    loaded = {r["Source_System_ID__c"]: r for r in world.salesforce.records("Case_Matter__c")}
    for matter in world.tenant.records["matters"]:
        row = loaded.get(salesforce.external_id("matters", matter["id"]))
        if row is not None and matter.get("status") in ("open", "pending"):
            assert row["Status__c"] == "Pending", matter["id"]
    assert any(m.get("status") == "open" for m in world.tenant.records["matters"])


async def test_an_edited_matter_status_in_the_confirmed_file_lands_in_dataverse(
    dv_world: DvWorld, tmp_path: Path
) -> None:
    proposal = await propose_mapping(dv_world.plan, out=tmp_path / "mapping.toml")
    text = proposal.path.read_text(encoding="utf-8")
    pending = tomllib.loads(text)["values"]["matter_status"]["map"]["pending"]["to"]
    plan = await gate_story(
        dv_world.plan, proposal.path,
        edit_entry(text, "values.matter_status.map", "open", str(pending)),
    )  # fmt: skip
    await run_migrate(plan)
    loaded = {r["crm_sourceid"]: r for r in dv_world.dataverse.records("crm_matters")}
    statuses = set()
    for matter in dv_world.tenant.records["matters"]:
        row = loaded.get(dynamics.external_id("matters", matter["id"]))
        if row is not None and matter.get("status") == "open":
            statuses.add(row["crm_status"])
    assert statuses == {pending}


async def test_the_operator_proposes_and_confirms_from_the_command_line(
    world: World, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(plan_toml(world) + 'file = "mapping.toml"\n', encoding="utf-8")
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": world.plan.journal.dsn or "",
           "CRMLIFT_DATA_DIR": str(world.plan.journal.data_dir)}  # fmt: skip
    code, out, err = await crmlift(env, "mapping", "propose", "--plan", str(plan_file))
    assert code == 0, err
    assert "mapping proposed" in out
    assert (tmp_path / "mapping.toml").is_file()
    code, out, err = await crmlift(env, "mapping", "propose", "--plan", str(plan_file))
    assert code == 2
    assert "--force" in err
    code, out, err = await crmlift(
        env, "mapping", "confirm", "--plan", str(plan_file), "--by", "ops"
    )
    assert code == 0, err
    assert re.search(r"confirmed by ops at .*; fingerprint [0-9a-f]{64}", out)
