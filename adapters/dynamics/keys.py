"""How crmlift names Dataverse rows and lookups in forms real Dataverse accepts.

Three conventions shared by the mapping (which names things) and the client (which
puts them on the wire):

* **Alternate-key values** travel through :func:`encode_key`. Dataverse refuses a key
  URL whose value holds ``/ # < > * % & : \\ ? +`` ("If the data within a column that is
  used in an alternate key contains one of the following characters … then GET or
  PATCH actions won't work",
  https://learn.microsoft.com/power-apps/maker/data-platform/define-alternate-keys-portal),
  and our external ids carry ``note:``, ``esign:``, ``contact:`` prefixes.
* **Notes** (``annotation``) take no custom column, so no alternate key
  (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation:
  CanCreateAttributes false): a note's primary key is :func:`row_id`, a UUIDv5 of its
  external id, and a PATCH on that id is the upsert (update-delete-entities-using-web-api,
  "Upsert a table row").
* **Lookups** are named by column, never by navigation property: a single-target lookup
  by its logical name (``crm_matterid``), a polymorphic one by :func:`lookup_key`
  (``regardingobjectid.crm_matter``). The client reads the navigation property
  (case-sensitive, ``crm_MatterId``) from ManyToOneRelationships.
"""

from __future__ import annotations

import string
import uuid

KEY_SAFE = frozenset(string.ascii_letters + string.digits + "._-")
"""Characters a key value keeps as they are: unreserved in a URL, never refused."""
KEY_ESCAPE = "~"
"""Starts ``~XX``, one UTF-8 byte in upper-case hex; itself escaped as ``~7E``."""

ROW_ID_NAMESPACE = uuid.UUID("6f3c2d1e-9a4b-5c7d-8e0f-1a2b3c4d5e6f")
"""crmlift's fixed UUIDv5 namespace for primary keys it derives (never change it: a rerun
finds its notes by these ids)."""

LOOKUP_SEPARATOR = "."
"""Between a polymorphic lookup's column and its target table; no logical name holds it."""


def encode_key(value: str) -> str:
    """An alternate-key value Dataverse accepts in a key URL: ``note:nt_1`` → ``note~3Ant_1``.

    Every character outside letters, digits and ``._-`` becomes ``~`` and its UTF-8 bytes
    in hex, ``~`` included; the encoding is prefix-free, so :func:`decode_key` inverts
    it and two ids never share an encoding. Ids made only of safe characters (BackDocket's
    ``ct_000001``) stay as they are.
    """
    out: list[str] = []
    for char in value:
        if char in KEY_SAFE:
            out.append(char)
        else:
            out.extend(f"{KEY_ESCAPE}{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_key(encoded: str) -> str:
    """The external id :func:`encode_key` made ``encoded`` from; ValueError if it did not."""
    raw = bytearray()
    position = 0
    while position < len(encoded):
        char = encoded[position]
        if char == KEY_ESCAPE:
            pair = encoded[position + 1 : position + 3]
            if len(pair) != 2 or not all(c in string.hexdigits for c in pair):
                raise ValueError(f"{encoded!r}: a broken escape at {position}")
            raw.append(int(pair, 16))
            position += 3
            continue
        if char not in KEY_SAFE:
            raise ValueError(f"{encoded!r}: {char!r} is never left unescaped")
        raw.extend(char.encode("ascii"))
        position += 1
    return raw.decode("utf-8")


def row_id(table: str, external_id: str) -> str:
    """The primary key crmlift gives a row of a table without an alternate key: the same
    for the same record on every run, so a rerun updates instead of duplicating."""
    return str(uuid.uuid5(ROW_ID_NAMESPACE, f"{table}/{external_id}"))


def lookup_key(attribute: str, target: str) -> str:
    """How a payload names a polymorphic lookup bound to ``target``."""
    return f"{attribute}{LOOKUP_SEPARATOR}{target}"


def split_lookup_key(name: str) -> tuple[str, str | None]:
    """``(column, target)`` of a payload field; target None for a plain name."""
    attribute, separator, target = name.partition(LOOKUP_SEPARATOR)
    return (attribute, target) if separator and target else (name, None)


SHAREPOINT_FILES = "sharepointdocument"
"""The table a file in SharePoint shows up as in Dataverse (the ``sharepointdocument``
virtual table behind a record's Documents tab,
https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/sharepointdocument).
Its rows are never written through the Web API: a payload for it is a file the client
uploads into the record's SharePoint folder through SharePoint's REST API."""

LIBRARY_PREFIX = "library:"
"""A lookup value naming a table's document library location instead of a row id."""


def library_ref(table: str) -> str:
    """The value a ``sharepointdocumentlocation`` lookup holds to hang a record's folder
    off ``table``'s document library location, whose id only the org knows: the client
    finds (or creates) that location and binds to it. Stable, so a rerun hashes the same."""
    return f"{LIBRARY_PREFIX}{table}"


def library_table(value: object) -> str | None:
    """The table a :func:`library_ref` names; None for anything else (a real row id)."""
    if isinstance(value, str) and value.startswith(LIBRARY_PREFIX):
        return value[len(LIBRARY_PREFIX) :] or None
    return None


SHAREPOINT_FORBIDDEN = frozenset('"*:<>?/\\|')
"""What a SharePoint file or folder name cannot hold
(https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint-64883a5d-228e-48f5-b3d2-eb39e07630fa)."""
SHAREPOINT_NAME_LENGTH = 128
"""crmlift keeps names short: a whole decoded SharePoint path may not exceed 400 characters."""


def sharepoint_name(name: str, fallback: str) -> str:
    """``name`` as SharePoint accepts it: forbidden characters become ``_``, no leading or
    trailing spaces or final dot, at most SHAREPOINT_NAME_LENGTH characters (extension kept)."""
    cleaned = "".join("_" if c in SHAREPOINT_FORBIDDEN else c for c in name).strip()
    cleaned = cleaned.rstrip(". ") or fallback
    if len(cleaned) <= SHAREPOINT_NAME_LENGTH:
        return cleaned
    _, dot, ext = cleaned.rpartition(".")
    suffix = f".{ext}" if dot and len(ext) <= 16 else ""
    return cleaned[: SHAREPOINT_NAME_LENGTH - len(suffix)].rstrip(". ") + suffix
