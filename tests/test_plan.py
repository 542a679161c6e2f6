"""An operator's plan: secrets by env reference only, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.errors import ConfigError
from service.plan import load_plan

PLAN = """
[migration]
name = "acme"
output_dir = "out"

[source]
platform = "backdocket"
base_url = "https://acme.backdocket.com"
client_id = "crmlift"
client_secret = { env = "ACME_SECRET" }

[source.quota]
rate = 10

[extract]
window_records = 1000
collections = ["users", "contacts"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_plan_resolves_secrets_from_the_environment(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN), env={"ACME_SECRET": "hunter2"})
    assert plan.source.client_secret.reveal() == "hunter2"
    assert "hunter2" not in repr(plan)
    assert plan.source_quota.rate == 10
    assert plan.extract.collections == ("users", "contacts")
    assert plan.output_dir == tmp_path / "out"
    assert plan.public_settings()["source"]["client_secret"] == {"env": "ACME_SECRET"}


def test_the_journal_dsn_and_data_dir_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "ACME_SECRET": "acme-s3cret",
        "CRMLIFT_JOURNAL_DSN": "postgresql://db/crmlift",
        "CRMLIFT_DATA_DIR": str(tmp_path / "data"),
    }
    plan = load_plan(write(tmp_path, PLAN), env=env)
    assert plan.journal.dsn == "postgresql://db/crmlift"
    assert plan.journal.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('{ env = "ACME_SECRET" }', '"hunter2"'), "environment reference"),
        (('name = "acme"', ""), "missing migration.name"),
        (("rate = 10", "rate = -1"), "positive"),
        (('"contacts"]', '"contacts", "invoices"]'), "unknown collection"),
        (("window_records = 1000", 'window_records = "many"'), "must be a int"),
        (('platform = "backdocket"', 'platform = "clio"'), "not supported"),
    ],
)
def test_mistakes_give_one_clear_error(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_plan(write(tmp_path, PLAN.replace(*edit)), env={"ACME_SECRET": "acme-s3cret"})


def test_an_unset_secret_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ACME_SECRET is not set"):
        load_plan(write(tmp_path, PLAN), env={})


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_plan(write(tmp_path, "[migration"))


DESTINATION = """
[destination]
platform = "salesforce"
login_url = "https://acme.my.salesforce.com"
client_id = "3MVG9"
client_secret = { env = "SF_SECRET" }
fallback_owner_email = "admin@acme.example"

[destination.quota]
daily_requests = 250000

[load]
batches_in_flight = 6
"""


def test_a_destination_brings_its_quota_and_load_budget(tmp_path: Path) -> None:
    plan = load_plan(
        write(tmp_path, PLAN + DESTINATION),
        env={"ACME_SECRET": "acme-s3cret", "SF_SECRET": "sf-s3cret"},
    )
    assert plan.destination is not None
    assert plan.destination.quota.daily_requests == 250_000
    assert plan.destination.batches_in_flight == 6
    assert plan.destination.batch_records == 2500
    assert plan.destination.config.client_secret.reveal() == "sf-s3cret"


def test_a_load_budget_of_zero_is_refused(tmp_path: Path) -> None:
    bad = PLAN + DESTINATION.replace("batches_in_flight = 6", "batches_in_flight = 0")
    with pytest.raises(ConfigError, match="at least 1"):
        load_plan(
            write(tmp_path, bad), env={"ACME_SECRET": "acme-s3cret", "SF_SECRET": "sf-s3cret"}
        )


def test_a_cutover_window_is_hours_above_zero(tmp_path: Path) -> None:
    env = {"ACME_SECRET": "acme-s3cret"}
    assert load_plan(write(tmp_path, PLAN), env=env).cutover_hours is None
    windowed = PLAN.replace('output_dir = "out"', 'output_dir = "out"\ncutover_hours = 8')
    assert load_plan(write(tmp_path, windowed), env=env).cutover_hours == 8.0
    for bad in ("0", "-1.5", '"8h"', "true"):
        text = PLAN.replace('output_dir = "out"', f'output_dir = "out"\ncutover_hours = {bad}')
        with pytest.raises(ConfigError, match="cutover_hours must be a number of hours > 0"):
            load_plan(write(tmp_path, text), env=env)
