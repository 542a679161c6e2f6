"""Files over Dataverse's attachment limit go to SharePoint: names, settings and costs.

Pure checks of what the end-to-end test in test_migrate_dynamics.py relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.dynamics.client import Application, DataverseConfig
from adapters.dynamics.costs import files_cost
from adapters.dynamics.keys import (
    SHAREPOINT_FILES,
    SHAREPOINT_NAME_LENGTH,
    library_ref,
    library_table,
    sharepoint_name,
)
from adapters.dynamics.sharepoint import SharePointConfig, error_parts
from adapters.errors import ConfigError
from adapters.secrets import Secret
from service.plan import parse_plan

SITE = "https://acme.sharepoint.com/sites/crm"
MB = 1024 * 1024


def _plan(tmp_path: Path, destination: dict[str, Any], mapping: dict[str, Any]) -> DataverseConfig:
    raw = {
        "migration": {"name": "m"},
        "source": {"base_url": "https://bd.example", "client_id": "c",
                   "client_secret": {"env": "S"}},
        "destination": {"platform": "dynamics", "environment_url": "https://acme.crm.dynamics.com",
                        "tenant_id": "t", "client_id": "c", "client_secret": {"env": "S"},
                        "fallback_owner_email": "a@acme.example", **destination},
        "mapping": mapping,
    }  # fmt: skip
    plan = parse_plan(raw, env={"S": "x"}, base=tmp_path)
    assert plan.destination is not None
    config = plan.destination.config
    assert isinstance(config, DataverseConfig)
    return config


def test_the_site_comes_from_mapping_and_the_token_is_for_sharepoint(tmp_path: Path) -> None:
    """Real SharePoint wants a token for its own resource, https://<tenant>.sharepoint.com
    (learn.microsoft.com/sharepoint/dev/solution-guidance/security-apponly-azuread)."""
    config = _plan(tmp_path, {}, {"sharepoint_site": SITE + "/"}).sharepoint
    assert config is not None
    assert (config.site_url, config.site_path, config.site_id) == (SITE, "/sites/crm", None)
    assert config.origin == "https://acme.sharepoint.com"
    assert config.token_scope == "https://acme.sharepoint.com/.default"
    assert _plan(tmp_path, {}, {}).sharepoint is None


def test_a_simulator_or_proxy_address_takes_the_calls_and_the_scope(tmp_path: Path) -> None:
    destination = {"sharepoint_url": "https://127.0.0.1:8443"}
    config = _plan(tmp_path, destination, {"sharepoint_site": SITE, "sharepoint_site_id": "g"})
    assert config.sharepoint is not None
    assert config.sharepoint.origin == "https://127.0.0.1:8443"
    assert config.sharepoint.token_scope == "https://127.0.0.1:8443/.default"
    assert config.sharepoint.site_id == "g"
    scoped = {**destination, "sharepoint_scope": "https://acme.sharepoint.com/.default"}
    explicit = _plan(tmp_path, scoped, {"sharepoint_site": SITE}).sharepoint
    assert explicit is not None
    assert explicit.token_scope == "https://acme.sharepoint.com/.default"


def test_a_site_that_is_no_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sharepoint_site"):
        _plan(tmp_path, {}, {"sharepoint_site": "acme/sites/crm"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Invoice 📄.pdf", "Invoice 📄.pdf"),
        ('a:b*c?"d<e>f|g/h\\i.pdf', "a_b_c__d_e_f_g_h_i.pdf"),
        ("  draft. ", "draft"),
        ("...", "fallback"),
    ],
)
def test_file_names_keep_to_what_sharepoint_accepts(name: str, expected: str) -> None:
    """support.microsoft.com "Restrictions and limitations in OneDrive and SharePoint":
    no " * : < > ? / \\ |, no leading/trailing spaces, no final period."""
    assert sharepoint_name(name, "fallback") == expected


def test_a_long_file_name_is_cut_but_keeps_its_extension() -> None:
    cut = sharepoint_name("x" * 300 + ".docx", "f")
    assert len(cut) == SHAREPOINT_NAME_LENGTH
    assert cut.endswith(".docx")


def test_a_library_ref_names_a_table_and_nothing_else() -> None:
    assert library_table(library_ref("crm_matter")) == "crm_matter"
    assert library_table("5b0d7a6e-0000-4000-8000-00000000517e") is None
    assert library_table(None) is None


def test_sharepoint_errors_read_in_both_json_shapes() -> None:
    nometadata = b'{"odata.error": {"code": "-2147024894, X", "message": {"value": "Not Found"}}}'
    verbose = b'{"error": {"code": "-1, Y", "message": {"lang": "en-US", "value": "Bad"}}}'
    assert error_parts(nometadata, 404) == ("-2147024894, X", "Not Found")
    assert error_parts(verbose, 400) == ("-1, Y", "Bad")
    assert error_parts(b"<html>busy</html>", 503) == ("HTTP_503", "<html>busy</html>")


def test_files_in_sharepoint_cost_the_dataverse_environment_nothing() -> None:
    dataverse = _dataverse()
    assert files_cost(SHAREPOINT_FILES, [30 * MB], 10, 2500, dataverse).requests == 0
    assert files_cost("annotation", [MB], 10, 2500, dataverse).requests > 0


def _dataverse() -> DataverseConfig:
    return DataverseConfig(
        "https://x.crm.dynamics.com", "t", (Application("c", Secret("sharepoint-s3cret")),)
    )


def test_sharepoint_config_refuses_a_relative_site() -> None:
    with pytest.raises(ValueError, match="absolute"):
        SharePointConfig("/sites/crm")
