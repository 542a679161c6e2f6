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


ENV = {"ACME_SECRET": "acme-s3cret", "SF_SECRET": "sf-s3cret"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("page_size", "pagesize"), r"source\.pagesize is not a known setting; did you mean "
         r"source\.page_size\?"),
        (("output_dir", "outptu_dir"), r"did you mean migration\.output_dir\?"),
        (("window_records", "windows_records"), r"did you mean extract\.window_records\?"),
        (("batches_in_flight", "batches_inflight"), r"did you mean load\.batches_in_flight\?"),
        (("daily_requests", "daily_request"), r"did you mean destination\.quota\.daily_requests"),
        (("fallback_owner_email", "fallback_owner"), r"did you mean destination\.fallback_owner"),
        (("max_file_bytes", "max_filebytes"), r"did you mean mapping\.max_file_bytes\?"),
        (("[load]", "[loader]"), r"plan loader is not a known setting; did you mean load\?"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_refused_naming_the_nearest_valid_one(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    """A typo used to be ignored silently, so the run used the default instead."""
    text = PLAN.replace('client_secret = { env = "ACME_SECRET" }',
                        'client_secret = { env = "ACME_SECRET" }\npage_size = 100')  # fmt: skip
    text += DESTINATION + "\n[mapping]\nmax_file_bytes = 1000\n"
    with pytest.raises(ConfigError, match=message):
        load_plan(write(tmp_path, text.replace(*edit)), env=ENV)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('"users", "contacts"]', "1, 2]"), r"unknown collection\(s\) 1, 2"),
        (('name = "acme"', 'name = "  "'), "migration.name is empty"),
        (("max_file_bytes = 1000", 'max_file_bytes = "big"'), "max_file_bytes must be a whole"),
        (("max_file_bytes = 1000", "max_file_bytes = -1"), "max_file_bytes must be a whole"),
        (("https://acme.backdocket.com", "acme.backdocket.com"), "base_url .* http"),
        (("https://acme.my.salesforce.com", "https://[::1"), "login_url .* not a valid URL"),
        (("https://acme.my.salesforce.com", "https://acme:99999"), "not a valid URL"),
        (('fallback_owner_email = "admin@acme.example"',
          'fallback_owner_email = "admin@acme.example"\nca_file = "/nope/ca.pem"'),
         "ca_file /nope/ca.pem is not a readable file"),
        (("[load]", '[journal]\ndsn = { env = "BAD_DSN" }\n[load]'), "journal DSN"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_when_the_plan_loads(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    text = PLAN + DESTINATION + "\n[mapping]\nmax_file_bytes = 1000\n"
    with pytest.raises(ConfigError, match=message):
        load_plan(write(tmp_path, text.replace(*edit)), env={**ENV, "BAD_DSN": "host=db x=1"})


def test_a_malformed_dsn_is_refused_without_repeating_its_password(tmp_path: Path) -> None:
    env = {**ENV, "CRMLIFT_JOURNAL_DSN": "postgresql://u:pa55word@db:notaport/x"}
    with pytest.raises(ConfigError, match="journal DSN is malformed") as refused:
        load_plan(write(tmp_path, PLAN), env=env)
    assert "pa55word" not in str(refused.value)


def test_output_dir_and_data_dir_must_not_be_files(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"output_dir .* is a file"):
        load_plan(write(tmp_path, PLAN), env=ENV)
    (tmp_path / "out").unlink()
    env = {**ENV, "CRMLIFT_DATA_DIR": str(tmp_path / "plan.toml")}
    with pytest.raises(ConfigError, match=r"data_dir .* is a file"):
        load_plan(write(tmp_path, PLAN), env=env)


def test_a_plan_file_that_is_not_utf8_or_a_directory_is_one_error(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(PLAN.replace("acme", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_plan(latin, env=ENV)
    with pytest.raises(ConfigError, match="is a directory"):
        load_plan(tmp_path, env=ENV)


def test_every_documented_mapping_setting_is_accepted(tmp_path: Path) -> None:
    salesforce = (
        PLAN + DESTINATION + '\n[mapping]\nmax_file_bytes = 1000\nintake_case_forms = ["pi"]\n'
        "state_country_picklists = true\n"
    )
    plan = load_plan(write(tmp_path, salesforce), env=ENV)
    assert plan.destination is not None
    assert plan.destination.mapping["max_file_bytes"] == 1000


def test_the_source_timeouts_are_positive_seconds(tmp_path: Path) -> None:
    """A dripping source is bounded by source.page_deadline; the plan carries it through."""
    env = {"ACME_SECRET": "acme-s3cret"}
    tuned = PLAN.replace("[source]\n", "[source]\npage_deadline = 45\nrequest_timeout = 7.5\n")
    plan = load_plan(write(tmp_path, tuned), env=env)
    assert (plan.source.page_deadline, plan.source.request_timeout) == (45.0, 7.5)
    for bad in ("page_deadline = 0", 'page_deadline = "long"', "request_timeout = -1"):
        edited = PLAN.replace("[source]\n", f"[source]\n{bad}\n")
        with pytest.raises(ConfigError, match="positive number of seconds"):
            load_plan(write(tmp_path, edited), env=env)


def test_the_catchup_passes_are_a_setting_of_the_extract_table(tmp_path: Path) -> None:
    env = {"ACME_SECRET": "acme-s3cret"}
    tuned = PLAN.replace("[extract]\n", "[extract]\ncatchup_passes = 2\n")
    assert load_plan(write(tmp_path, tuned), env=env).extract.catchup_passes == 2
    never = PLAN.replace("[extract]\n", "[extract]\ncatchup_passes = 0\n")
    with pytest.raises(ConfigError, match="at least 1"):
        load_plan(write(tmp_path, never), env=env)
