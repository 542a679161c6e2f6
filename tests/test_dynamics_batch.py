"""The Dataverse ``$batch`` multipart codec: golden shapes (destinations.md §2.3), round trips."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dynamics.batch import (
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    boundary_of,
    encode_batch,
    encode_batch_response,
    parse_batch_groups,
    parse_batch_request,
    parse_batch_response,
)
from adapters.dynamics.keys import decode_key, encode_key, lookup_key, row_id, split_lookup_key

ORG = "https://contoso.crm.dynamics.com/api/data/v9.2"

GOLDEN_REQUEST = f"""--batch_AAA123
Content-Type: multipart/mixed; boundary=changeset_BBB456

--changeset_BBB456
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST {ORG}/contacts HTTP/1.1
Content-Type: application/json; type=entry

{{"firstname":"Ana"}}
--changeset_BBB456
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST {ORG}/tasks HTTP/1.1
Content-Type: application/json; type=entry

{{"subject":"Call","regardingobjectid_contact_task@odata.bind":"$1"}}
--changeset_BBB456--

--batch_AAA123
Content-Type: application/http
Content-Transfer-Encoding: binary

GET {ORG}/contacts?$select=firstname HTTP/1.1
Accept: application/json

--batch_AAA123--
""".encode()

GOLDEN_RESPONSE = f"""--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f
Content-Type: multipart/mixed; boundary=changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc

--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: {ORG}/contacts(a4d6b0b1-3b5e-e811-a95a-000d3a1a1a1a)
OData-EntityId: {ORG}/contacts(a4d6b0b1-3b5e-e811-a95a-000d3a1a1a1a)


--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc--
--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 400 Bad Request
Content-Type: application/json; odata.metadata=minimal
OData-Version: 4.0

{{"error":{{"code":"0x80044331","message":"A validation error occurred."}}}}
--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f--
""".replace("\n", "\r\n").encode()


def test_parses_the_documented_request_shape_with_bare_line_feeds() -> None:
    groups = parse_batch_request("multipart/mixed; boundary=batch_AAA123", GOLDEN_REQUEST)
    assert [len(group) for group in groups] == [2, 1]
    create, task = groups[0]
    assert (create.method, create.url, create.content_id) == ("POST", f"{ORG}/contacts", "1")
    assert create.header("content-type") == "application/json; type=entry"
    assert orjson.loads(create.body or b"") == {"firstname": "Ana"}
    assert task.content_id == "2"
    assert orjson.loads(task.body or b"")["regardingobjectid_contact_task@odata.bind"] == "$1"
    (query,) = groups[1]
    assert (query.method, query.url, query.body, query.content_id) == (
        "GET",
        f"{ORG}/contacts?$select=firstname",
        None,
        None,
    )


def test_parses_the_documented_response_shape() -> None:
    content_type = "multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f"
    created, failed = parse_batch_response(content_type, GOLDEN_RESPONSE)
    assert (created.status, created.content_id, created.body) == (204, "1", None)
    assert created.header(
        "odata-entityid",
    ) == (f"{ORG}/contacts(a4d6b0b1-3b5e-e811-a95a-000d3a1a1a1a)")
    assert failed.status == 400
    assert failed.content_id is None
    assert orjson.loads(failed.body or b"")["error"]["code"] == "0x80044331"


def test_encoded_request_matches_the_documented_layout() -> None:
    content_type, body = encode_batch(
        [
            [BatchRequest("POST", "contacts", {"Content-Type": "application/json"}, b"{}", "1")],
            [BatchRequest("GET", "contacts?$top=1", {"Accept": "application/json"})],
        ],
        "batch_x",
    )
    assert content_type == "multipart/mixed; boundary=batch_x"
    assert body == (
        b"--batch_x\r\n"
        b"Content-Type: multipart/mixed; boundary=changeset_x_0\r\n\r\n"
        b"--changeset_x_0\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: 1\r\n\r\n"
        b"POST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n"
        b"--changeset_x_0--\r\n\r\n"
        b"--batch_x\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"GET contacts?$top=1 HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
        b"--batch_x--\r\n"
    )


def test_encoded_response_uses_status_lines_and_changeset_parts() -> None:
    content_type, body = encode_batch_response(
        [
            [BatchResponse(204, {"OData-EntityId": f"{ORG}/tasks(1)"}, None, "1")],
            BatchResponse(200, {"Content-Type": "application/json"}, b'{"value":[]}'),
        ],
        "batchresponse_9",
    )
    assert b"HTTP/1.1 204 No Content\r\nOData-EntityId: " in body
    assert b"boundary=changesetresponse_9_0" in body
    assert b"HTTP/1.1 200 OK" in body
    assert [r.status for r in parse_batch_response(content_type, body)] == [204, 200]


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/mixed; boundary="batch_q"',
        "multipart/mixed;boundary=batch_q",
        "Multipart/Mixed; charset=x; boundary=batch_q",
    ],
)
def test_boundary_quoted_or_bare(content_type: str) -> None:
    assert boundary_of(content_type) == "batch_q"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/mixed", b""),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/http\r\n\r\nGET x\r\n"),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"),
        (
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Type: application/http\r\n\r\nGET x HTTP/1.1\r\n\r\n\r\n--b--",
        ),
    ],
)
def test_malformed_requests_are_refused(content_type: str, body: bytes) -> None:
    if body.endswith(b"--b--"):
        assert parse_batch_request(content_type, body)[0][0].url == "x"
        return
    with pytest.raises(BatchFormatError):
        parse_batch_request(content_type, body)


def test_changeset_with_get_is_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="GET"):
        encode_batch([[BatchRequest("POST", "a"), BatchRequest("GET", "b")]], "batch_1")
    body = (
        b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        b"--c\r\nContent-Type: application/http\r\n\r\nGET x HTTP/1.1\r\n\r\n\r\n--c--\r\n--b--\r\n"
    )
    with pytest.raises(BatchFormatError, match="GET"):
        parse_batch_request("multipart/mixed; boundary=b", body)


_json: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.none() | _json.map(lambda value: orjson.dumps({"v": value}))
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_headers = st.dictionaries(
    _token.map(lambda name: f"X-{name}"),
    st.text(alphabet="abc xyz;=/*0123", max_size=20).map(str.strip),
    max_size=3,
)
_paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz()'=$_0123456789", min_size=1, max_size=30)
_write = st.builds(
    BatchRequest,
    method=st.sampled_from(["POST", "PATCH", "PUT", "DELETE"]),
    url=_paths,
    headers=_headers,
    body=_bodies,
    content_id=st.none() | st.integers(1, 999).map(str),
)
_read = st.builds(BatchRequest, method=st.just("GET"), url=_paths, headers=_headers)
_groups = st.lists(
    st.lists(_write, min_size=1, max_size=6) | _read.map(lambda request: [request]),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(groups=_groups, boundary=_token.map(lambda name: f"batch_{name}"))
def test_request_round_trip(groups: list[list[BatchRequest]], boundary: str) -> None:
    content_type, body = encode_batch(groups, boundary)
    assert parse_batch_request(content_type, body) == groups


_response = st.builds(
    BatchResponse,
    status=st.sampled_from([200, 201, 204, 400, 404, 412, 429, 500]),
    headers=_headers,
    body=_bodies,
    content_id=st.none() | st.integers(1, 999).map(str),
)


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.lists(_response, min_size=1, max_size=5) | _response, max_size=40))
def test_response_round_trip(groups: list[list[BatchResponse] | BatchResponse]) -> None:
    content_type, body = encode_batch_response(groups, "batchresponse_00000000-0000")
    flat = [
        response
        for group in groups
        for response in ([group] if isinstance(group, BatchResponse) else group)
    ]
    assert parse_batch_response(content_type, body) == flat


# --- alternate-key values and derived ids (issue 9, Dataverse item 5) -------------------------

FORBIDDEN_IN_KEY_URL = set("/#<>*%&:\\?+")
"""learn.microsoft.com/power-apps/maker/data-platform/define-alternate-keys-portal: "If the
data within a column that is used in an alternate key contains one of the following
characters /,#,<,>,*,%,&,:,\\,?,+ then GET or PATCH actions won't work"."""


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_encoded_key_values_round_trip_and_avoid_every_forbidden_character(value: str) -> None:
    encoded = encode_key(value)
    assert decode_key(encoded) == value
    assert not FORBIDDEN_IN_KEY_URL & set(encoded)
    assert quote(encoded, safe="~") == encoded  # nothing left for percent-encoding either


@settings(max_examples=500)
@given(st.text(max_size=20), st.text(max_size=20))
def test_distinct_ids_never_share_an_encoding(a: str, b: str) -> None:
    assert (encode_key(a) == encode_key(b)) == (a == b)


def test_our_ids_encode_readably() -> None:
    assert encode_key("ct_000001") == "ct_000001"
    assert encode_key("note:nt_1") == "note~3Ant_1"
    assert encode_key("a~3A") == "a~7E3A"  # the escape escapes itself: no collision
    with pytest.raises(ValueError, match="never left unescaped"):
        decode_key("note:nt_1")


def test_note_ids_are_stable_uuids_per_table_and_external_id() -> None:
    first = row_id("annotation", "note:nt_1")
    assert first == row_id("annotation", "note:nt_1")
    assert first != row_id("annotation", "nt_1")
    assert str(uuid.UUID(first)) == first


def test_lookup_keys_name_column_and_target() -> None:
    assert lookup_key("regardingobjectid", "crm_matter") == "regardingobjectid.crm_matter"
    assert split_lookup_key("regardingobjectid.crm_matter") == ("regardingobjectid", "crm_matter")
    assert split_lookup_key("crm_matterid") == ("crm_matterid", None)


def test_a_failed_changeset_answers_once_a_successful_one_per_request() -> None:
    """execute-batch-operations-using-web-api: a failed changeset returns one error."""
    error = BatchResponse(400, {"Content-Type": "application/json"}, b'{"error":{}}')
    ok = [BatchResponse(204, {}, None, "1"), BatchResponse(204, {}, None, "2")]
    content_type, body = encode_batch_response([error, ok], "batchresponse_x")
    assert [[r.status for r in g] for g in parse_batch_groups(content_type, body)] == [
        [400],
        [204, 204],
    ]
