"""Bulk API 2.0 ingest jobs for the simulator: the state machine, CSV in, result CSVs out.

Jobs follow destinations.md §1.2/§1.4: create (Open) → PUT one CSV (201) → PATCH
UploadComplete → a background task moves it InProgress → JobComplete (or Failed), at
``bulk_records_per_second``, consuming one daily batch per 10,000 records. Rows go
through the same :class:`Org` write rules as REST, so a row refused here is refused
there with the same code; result CSVs carry ``sf__Id``/``sf__Created``/``sf__Error``.
When asked, a row lands in failedResults with ``UNABLE_TO_LOCK_ROW`` (not written).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from adapters.salesforce.schema import FieldSpec
from adapters.salesforce.sim_store import Org, RecordError, Table, duplicate_key, now_text
from adapters.salesforce.sim_wire import (
    SF_USER,
    ApiError,
    json_response,
    not_found,
    read_object,
    row_lock_error,
)

JOB_PREFIX = "750"
"""Key prefix of Bulk API jobs (destinations.md §1.2: "Job IDs start with 750")."""

BATCH_RECORDS = 10_000
"""Records per internal batch; each counts against the daily batch allocation (§1.2)."""

MAX_UPLOAD_BASE64 = 150 * 1024 * 1024
"""Largest upload, measured base64-encoded: 150 MB (§1.2), about 100 MB of raw CSV."""

_CHUNK = 1_000
"""Rows applied between yields to the event loop, so a big job never stalls other requests."""

OPERATIONS = frozenset({"insert", "update", "upsert", "delete", "hardDelete"})
DELETE_OPERATIONS = frozenset({"delete", "hardDelete"})
"""``delete`` sends records to the Recycle Bin; ``hardDelete`` makes them "immediately
eligible for deletion", never stored in the Recycle Bin (Create a Job, ``operation``)."""
DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
NULL_CELL = "#N/A"
"""A cell that nulls its field; an empty cell leaves the field alone (§1.2 CSV conventions)."""

OPEN, UPLOAD_COMPLETE, IN_PROGRESS = "Open", "UploadComplete", "InProgress"
JOB_COMPLETE, FAILED, ABORTED = "JobComplete", "Failed", "Aborted"
TERMINAL = frozenset({JOB_COMPLETE, FAILED, ABORTED})
DELETABLE = TERMINAL | {UPLOAD_COMPLETE}
RESULT_KINDS = {
    "successfulresults": "successful",
    "failedresults": "failed",
    "unprocessedrecords": "unprocessed",
}
"""Result paths, matched case-insensitively (simple-salesforce asks for unprocessedRecords)."""


class _JobFailure(Exception):
    """Ends a job in state Failed with this ``errorMessage``."""


@dataclass(frozen=True, slots=True)
class _Column:
    """One CSV header cell: a field, or a lookup resolved through ``relation.External__c``."""

    header: str
    field: str
    relation: str | None = None
    target: str | None = None
    external: str | None = None


@dataclass(slots=True)
class IngestJob:
    """One ingest job and everything it has produced so far."""

    id: str
    object: str
    operation: str
    external_id_field: str | None
    line_ending: str
    column_delimiter: str
    created_by: str
    api_version: float
    created_date: str = field(default_factory=now_text)
    modstamp: str = field(default_factory=now_text)
    state: str = OPEN
    data: bytes | None = None
    header: list[str] = field(default_factory=list)
    successes: list[list[str]] = field(default_factory=list)
    failures: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] | None = None
    processed: int = 0
    failed: int = 0
    processing_ms: int = 0
    error_message: str | None = None
    task: asyncio.Task[None] | None = None

    def move(self, state: str) -> None:
        self.state = state
        self.modstamp = now_text()

    def info(self) -> dict[str, Any]:
        """Job info exactly as GET .../jobs/ingest/{id} reports it."""
        info: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id_field is not None:
            info["externalIdFieldName"] = self.external_id_field
        info |= {
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "jobType": "V2Ingest",
        }
        if self.state == OPEN:
            info["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        info |= {
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": self.failed,
            "retries": 0,
            "totalProcessingTime": self.processing_ms,
            "apiActiveProcessingTime": self.processing_ms,
            "apexProcessingTime": 0,
        }
        if self.error_message is not None:
            info["errorMessage"] = self.error_message
        return info


@dataclass(frozen=True, slots=True)
class _Plan:
    """A parsed upload: the columns it names and its data rows."""

    table: Table
    columns: list[_Column]
    rows: list[list[str]]


class IngestJobs:
    """Every ingest job of the org, its HTTP handlers and its processing tasks.

    ``take_batch(records)`` consumes one daily batch and ``records`` daily records and
    says whether the allocation allowed it; the simulator owns those counters.
    ``row_locked()`` is asked once per row; when it says yes the row fails
    ``UNABLE_TO_LOCK_ROW`` untouched (the simulator's injected fault).
    ``may_hard_delete(user_id)`` says whether the user holds the "Bulk API Hard Delete"
    system permission (see ``_check_permission``).
    """

    def __init__(
        self,
        org: Org,
        records_per_second: float,
        take_batch: Callable[[int], bool],
        on_job_created: Callable[[], None],
        row_locked: Callable[[], bool] = lambda: False,
        may_hard_delete: Callable[[str], bool] = lambda user_id: False,
    ) -> None:
        if records_per_second <= 0:
            raise ValueError("bulk_records_per_second must be positive")
        self.org = org
        self.records_per_second = records_per_second
        self.take_batch = take_batch
        self.on_job_created = on_job_created
        self.row_locked = row_locked
        self.may_hard_delete = may_hard_delete
        self.jobs: dict[str, IngestJob] = {}

    async def close(self) -> None:
        """Cancel processing tasks still running (server shutdown)."""
        tasks = [job.task for job in self.jobs.values() if job.task and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _job(self, request: web.Request) -> IngestJob:
        job = self.jobs.get(request.match_info["job"])
        if job is None:
            raise not_found()
        return job

    # -- handlers

    async def create(self, request: web.Request) -> web.Response:
        if request.content_type.startswith("multipart/"):
            return await self._create_multipart(request)
        job = self._new_job(await read_object(request), request)
        return json_response(job.info())

    async def _create_multipart(self, request: web.Request) -> web.Response:
        """Job JSON part ``job`` plus CSV part ``content``: created already UploadComplete."""
        reader = await request.multipart()
        parts: dict[str, bytes] = {}
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.name in {"job", "content"}:
                parts[part.name] = bytes(await part.read())
        if set(parts) != {"job", "content"}:
            raise ApiError(400, "INVALIDJOB", "A multipart job needs a 'job' and a 'content' part")
        job = self._new_job(orjson.loads(parts["job"]), request)
        job.data = parts["content"]
        self._start(job)
        return json_response(job.info())

    def _new_job(self, body: dict[str, Any], request: web.Request) -> IngestJob:
        table = self.org.table(str(body.get("object", "")))
        operation = body.get("operation")
        if table is None:
            raise ApiError(400, "INVALIDJOB", f"Invalid job object: {body.get('object')}")
        if operation not in OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", "Only contentType CSV is supported")
        line_ending = body.get("lineEnding", "LF")
        delimiter = body.get("columnDelimiter", "COMMA")
        if line_ending not in LINE_ENDINGS or delimiter not in DELIMITERS:
            raise ApiError(400, "INVALIDJOB", "Invalid lineEnding or columnDelimiter")
        external = self._external_field(table, operation, body.get("externalIdFieldName"))
        self._check_permission(str(operation), request[SF_USER])
        job = IngestJob(
            id=self.org.mint.next(JOB_PREFIX),
            object=table.name,
            operation=str(operation),
            external_id_field=external,
            line_ending=line_ending,
            column_delimiter=delimiter,
            created_by=request[SF_USER],
            api_version=float(request.match_info["version"].lstrip("v")),
        )
        self.jobs[job.id] = job
        self.on_job_created()
        return job

    def _check_permission(self, operation: str, user_id: str) -> None:
        """A ``hardDelete`` job needs the "Bulk API Hard Delete" system permission, which is
        "disabled by default and must be enabled by an administrator" (Create a Job,
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/create_job.htm,
        operation ``hardDelete``). The refusal comes when the job is created, before any
        data, as ``FEATURENOTENABLED`` (the code Salesforce CLI's ``data delete bulk
        --hard-delete`` translates into "You must have the 'Bulk API Hard Delete' system
        permission", salesforcecli/plugin-data test/commands/data/delete/bulk.test.ts);
        the message text is not documented and is modelled on Bulk API 1.0's
        ``FeatureNotEnabled: <operation> operation requires …``."""
        if operation == "hardDelete" and not self.may_hard_delete(user_id):
            raise ApiError(
                400,
                "FEATURENOTENABLED",
                "hardDelete operation requires the user permission Bulk API Hard Delete "
                "(PermissionsBulkApiHardDelete)",
            )

    @staticmethod
    def _external_field(table: Table, operation: str, name: Any) -> str | None:
        if operation != "upsert":
            return None
        if not name:
            raise ApiError(
                400, "INVALIDJOB", "External ID Field Name is required for upsert operation"
            )
        spec = table.field(str(name))
        if spec is None or not (spec.external_id or spec.name == "Id"):
            raise ApiError(400, "INVALIDJOB", f"Invalid external ID field: {name}")
        return spec.name

    async def list_jobs(self, request: web.Request) -> web.Response:
        records = [job.info() for job in self.jobs.values()]
        return json_response({"done": True, "records": records, "nextRecordsUrl": None})

    async def get(self, request: web.Request) -> web.Response:
        return json_response(self._job(request).info())

    async def upload(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.state != OPEN:
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is not in the Open state")
        if job.data is not None:
            raise ApiError(
                400,
                "INVALIDJOBSTATE",
                f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                "'Delete' the current Job then create a new Job and make sure you only do "
                "'PUT' once on a given Job.",
            )
        job.data = await _read_upload(request)
        return web.Response(status=201)

    async def patch(self, request: web.Request) -> web.Response:
        job = self._job(request)
        wanted = (await read_object(request)).get("state")
        if wanted == UPLOAD_COMPLETE and job.state == OPEN:
            self._start(job)
        elif wanted == ABORTED and job.state in {OPEN, UPLOAD_COMPLETE, IN_PROGRESS}:
            job.move(ABORTED)
            await _stop(job)
        else:
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state} to {wanted}"
            )
        return json_response(job.info())

    async def delete(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.state not in DELETABLE:
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Job {job.id} in state {job.state} cannot be deleted"
            )
        await _stop(job)
        del self.jobs[job.id]
        return web.Response(status=204)

    async def results(self, request: web.Request) -> web.Response:
        job = self._job(request)
        kind = RESULT_KINDS.get(request.match_info["kind"].lower())
        if kind is None:
            raise not_found()
        header, rows = self._result_rows(job, kind)
        delimiter = DELIMITERS[job.column_delimiter]
        text = _write_csv(header, rows, delimiter, LINE_ENDINGS[job.line_ending])
        return web.Response(body=text.encode(), content_type="text/csv", charset="UTF-8")

    def _result_rows(self, job: IngestJob, kind: str) -> tuple[list[str], list[list[str]]]:
        if kind == "successful":
            return ["sf__Id", "sf__Created", *job.header], job.successes
        if kind == "failed":
            return ["sf__Id", "sf__Error", *job.header], job.failures
        if job.unprocessed is not None:
            return job.header, job.unprocessed
        if job.state == ABORTED and job.data is not None:
            try:
                return _parse(job)
            except _JobFailure:
                return [], []
        return job.header, []

    # -- processing

    def _start(self, job: IngestJob) -> None:
        job.move(UPLOAD_COMPLETE)
        job.task = asyncio.get_running_loop().create_task(self._process(job))

    async def _process(self, job: IngestJob) -> None:
        """Apply the upload batch by batch, at the configured speed, honouring aborts."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(0)
        rows: list[list[str]] | None = None
        position = 0
        try:
            if job.state != UPLOAD_COMPLETE:
                return
            job.move(IN_PROGRESS)
            if job.data is None:
                raise _JobFailure("InvalidBatch : No content was uploaded for this job")
            job.header, rows = _parse(job)
            plan = self._plan(job, rows)
            rows = plan.rows
            while position < len(rows):
                batch = rows[position : position + BATCH_RECORDS]
                if not self.take_batch(len(batch)):
                    raise _JobFailure(
                        "ExceededQuota : The daily Bulk API batch or record allocation is spent"
                    )
                duplicates = self._duplicate_keys(job, plan, batch)
                for start in range(0, len(batch), _CHUNK):
                    if job.state == ABORTED:
                        return
                    chunk = batch[start : start + _CHUNK]
                    tick = loop.time()
                    for row in chunk:
                        self._apply(job, plan, row, duplicates)
                    position += len(chunk)
                    spent = loop.time() - tick
                    await asyncio.sleep(max(0.0, len(chunk) / self.records_per_second - spent))
            job.move(JOB_COMPLETE)
        except _JobFailure as failure:
            job.error_message = str(failure)
            job.move(FAILED)
        except Exception as error:  # a simulator bug must fail the job, not hang its pollers
            job.error_message = f"InternalServerError : {error!r}"
            job.move(FAILED)
        finally:
            if rows is not None:
                job.unprocessed = rows[position:]
            job.processing_ms = int((loop.time() - started) * 1000)

    def _plan(self, job: IngestJob, rows: list[list[str]]) -> _Plan:
        """Check the header against the object's fields and every row's width."""
        table = self.org.table(job.object)
        assert table is not None
        header = job.header
        columns = [self._column(table, name) for name in header]
        folded = Counter(name.casefold() for name in header)
        repeated = [name for name in header if folded[name.casefold()] > 1]
        if repeated:
            raise _JobFailure(f"InvalidBatch : Duplicate field name: {repeated[0]}")
        wanted = job.external_id_field or "Id"
        if job.operation != "insert" and wanted not in {c.field for c in columns if not c.relation}:
            raise _JobFailure(f"InvalidBatch : Field name not found : {wanted}")
        if job.operation in DELETE_OPERATIONS and [c.field for c in columns] != ["Id"]:
            # "the CSV file should contain only the Id field" for delete and hardDelete
            # (Prepare CSV Files, https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/datafiles_prepare_csv.htm;
            # simple-salesforce refuses any other header). What the org answers otherwise
            # is not documented: the strictest reading fails the job.
            extra = next(c.header for c in columns if c.field != "Id")
            raise _JobFailure(
                f"InvalidBatch : A {job.operation} job's CSV holds only the Id column: {extra}"
            )
        for number, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise _JobFailure(
                    f"ClientInputError : Row {number} has {len(row)} columns; the header has "
                    f"{len(header)}"
                )
        return _Plan(table, columns, rows)

    def _column(self, table: Table, name: str) -> _Column:
        """Resolve one header cell; unknown names fail the job, as Salesforce does."""
        relation_part, dot, external = name.partition(".")
        if not dot:
            spec = table.field(name)
            if spec is None:
                raise _JobFailure(f"InvalidBatch : Field name not found : {name}")
            return _Column(name, spec.name)
        relation_name, _, target_name = relation_part.partition(":")
        relation = table.relationships.get(relation_name.lower())
        if relation is None:
            raise _JobFailure(f"InvalidBatch : Field name not found : {name}")
        target = self._relation_target(relation, target_name)
        ext = None if target is None else target.field(external)
        if target is None or ext is None or not (ext.external_id or ext.name == "Id"):
            raise _JobFailure(f"InvalidBatch : Field name not found : {name}")
        return _Column(name, relation.name, relation_name, target.name, ext.name)

    def _relation_target(self, relation: FieldSpec, named: str) -> Table | None:
        if named:
            target = self.org.table(named)
            return target if target is not None and target.name in relation.reference_to else None
        if len(relation.reference_to) != 1:
            return None
        return self.org.table(relation.reference_to[0])

    def _duplicate_keys(self, job: IngestJob, plan: _Plan, batch: Sequence[list[str]]) -> set[str]:
        """Upsert keys that occur twice in one batch: both rows fail (see ``_upsert``)."""
        if job.operation != "upsert" or job.external_id_field == "Id":
            return set()
        index = next(i for i, c in enumerate(plan.columns) if c.field == job.external_id_field)
        counts = Counter(row[index].casefold() for row in batch if row[index])
        return {key for key, count in counts.items() if count > 1}

    def _apply(self, job: IngestJob, plan: _Plan, row: list[str], duplicates: set[str]) -> None:
        """One row through the org; its outcome lands in the success or failure results."""
        values = _values(plan.columns, row)
        record_id = str(values.get("Id") or "")
        user = job.created_by
        try:
            if self.row_locked():
                raise row_lock_error()
            if job.operation == "insert":
                record_id, created = self.org.create(plan.table, values, user), True
            elif job.operation == "update":
                if not record_id:
                    raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call")
                record_id, created = self.org.update(plan.table, record_id, values, user), False
            elif job.operation == "upsert":
                record_id, created = self._upsert(job, plan, values, duplicates)
            else:
                hard = job.operation == "hardDelete"
                if not record_id:
                    raise RecordError("MISSING_ARGUMENT", "Id not specified in a delete call")
                self.org.delete(record_id, hard=hard, expect=plan.table)
                created = False
        except RecordError as error:
            job.failures.append([record_id, error.as_bulk(), *row])
            job.failed += 1
        else:
            job.successes.append([record_id, "true" if created else "false", *row])
        job.processed += 1

    def _upsert(
        self, job: IngestJob, plan: _Plan, values: dict[str, Any], duplicates: set[str]
    ) -> tuple[str, bool]:
        name = job.external_id_field or "Id"
        spec = plan.table.field(name)
        assert spec is not None
        key = values.get(spec.name)
        if isinstance(key, str) and key.casefold() in duplicates:
            raise duplicate_key(spec.name, key)
        return self.org.upsert(plan.table, spec, key, values, job.created_by)


async def _stop(job: IngestJob) -> None:
    """Stop a job's processing between chunks, so what it wrote and what it left are exact."""
    if job.task is not None and not job.task.done():
        job.task.cancel()
        await asyncio.wait([job.task])


def _values(columns: Sequence[_Column], row: Sequence[str]) -> dict[str, Any]:
    """A CSV row as write values: empty cells skipped, ``#N/A`` nulls, lookups by external id."""
    values: dict[str, Any] = {}
    for column, cell in zip(columns, row, strict=True):
        if cell == "":
            continue
        value = None if cell == NULL_CELL else cell
        if column.relation is None:
            values[column.field] = value
        elif value is None:
            values[column.field] = None
        else:
            values[column.relation] = {
                "attributes": {"type": column.target},
                column.external: value,
            }
    return values


def _parse(job: IngestJob) -> tuple[list[str], list[list[str]]]:
    """The upload's header and rows, in the job's delimiter and line ending."""
    assert job.data is not None
    text = job.data.decode("utf-8-sig", errors="replace")
    first_break = text.find("\n")
    crlf = first_break > 0 and text[first_break - 1] == "\r"
    if first_break >= 0 and crlf != (job.line_ending == "CRLF"):
        raise _JobFailure(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting "
            f"is {job.line_ending}"
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.column_delimiter])
    try:
        header = next(reader)
    except StopIteration:
        raise _JobFailure("InvalidBatch : The uploaded CSV has no header row") from None
    return header, [row for row in reader if row]


def _write_csv(
    header: Sequence[str], rows: Sequence[Sequence[str]], delimiter: str, line_ending: str
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def _read_upload(request: web.Request) -> bytes:
    """The CSV body, refused once its base64 size would pass 150 MB."""
    limit = MAX_UPLOAD_BASE64 * 3 // 4
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 20):
        data += chunk
        if len(data) > limit:
            raise ApiError(
                400,
                "CLIENTINPUTERROR",
                "ClientInputError : Data size exceeds the max file size accepted by Bulk V2 "
                "(150 MB base64-encoded)",
            )
    return bytes(data)
