"""The error hierarchy, sorted by what the engine does about each error.

``FatalError`` stops the run with a documented exit code; ``RetriableError`` is
retried under a bounded policy; ``RecordError`` is journaled against its record
and the run goes on. Every error carries what an operator needs to act and never
a secret.
"""

from __future__ import annotations


class CrmliftError(Exception):
    """Root of every error crmlift raises on purpose."""

    exit_code = 1


class FatalError(CrmliftError):
    """The run cannot continue; the operator must act."""


class ConfigError(FatalError):
    """The plan or the settings are wrong."""

    exit_code = 2


class AuthError(FatalError):
    """A platform refused our credentials."""

    exit_code = 3

    def __init__(self, platform: str, reason: str) -> None:
        super().__init__(f"{platform}: credentials refused ({reason})")
        self.platform = platform
        self.reason = reason


class PlatformUnavailable(FatalError):
    """A platform kept failing after every retry the policy allows."""

    exit_code = 4

    def __init__(self, platform: str, what: str, reason: str) -> None:
        super().__init__(f"{platform}: {what} failed after retries ({reason})")
        self.platform = platform
        self.what = what
        self.reason = reason


class JournalUnavailable(FatalError):
    """The journal database cannot be reached or migrated."""

    exit_code = 5


class QuotaExhausted(FatalError):
    """A platform's allocation is spent; the run is resumable once it frees up."""

    exit_code = 6


class Interrupted(CrmliftError):
    """The operator stopped the run; everything finished so far is journaled."""

    exit_code = 75


class AnswerLost(CrmliftError):
    """A request that is not safe to repeat was sent, and its answer never arrived.

    The platform may or may not have acted on it: the caller finds out (a lookup
    by external id) before trying again.
    """

    def __init__(self, platform: str, what: str, reason: str) -> None:
        super().__init__(f"{platform}: the answer to {what} was lost ({reason})")
        self.platform = platform
        self.what = what


class RetriableError(CrmliftError):
    """A transient failure: the same call may succeed later."""

    def __init__(self, platform: str, what: str, status: int, retry_after: float | None) -> None:
        super().__init__(f"{platform}: {what} answered {status}")
        self.platform = platform
        self.what = what
        self.status = status
        self.retry_after = retry_after


class RecordError(CrmliftError):
    """One record cannot be processed; it is journaled with the reason and skipped."""

    def __init__(self, platform: str, collection: str, source_id: str, code: str, reason: str):
        super().__init__(f"{platform} {collection}/{source_id}: {code}: {reason}")
        self.platform = platform
        self.collection = collection
        self.source_id = source_id
        self.code = code
        self.reason = reason


def first_error(exc: BaseException) -> BaseException:
    """The error that matters inside nested task-group exception groups.

    A task group wraps whatever its tasks raised; the operator needs the first
    crmlift error (it carries the exit code and the record), else the first leaf.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = [first_error(e) for e in exc.exceptions]
    return next((e for e in leaves if isinstance(e, CrmliftError)), leaves[0])


class SchemaMissing(FatalError):
    """The destination lacks objects or fields the schema plan needs."""

    exit_code = 7


class PlatformUnreachable(PlatformUnavailable):
    """A platform could not be reached at all: no answer, only the network's reason.

    It names the URL and the cause (connection refused, DNS failure, TLS
    verification, timeout), because "failed after retries" alone leaves the
    operator guessing whether the address, the network or the certificate is wrong.
    """

    def __init__(self, platform: str, what: str, url: str, cause: str, *, tries: int) -> None:
        super().__init__(platform, what, cause)
        self.url = url
        self.cause = cause
        self.tries = tries
        attempts = "1 try" if tries == 1 else f"{tries} tries"
        self.args = (f"{platform}: {what} could not reach {url}: {cause} ({attempts})",)


class PlatformRefused(FatalError):
    """A platform answered in a way no retry can change: a permission it denies, an API
    version it does not serve, a redirect to another address, a cursor it repeats.

    It is raised at once, with the platform's own reason and the URL or collection
    concerned, so the operator is not told "failed after retries" about a refusal.
    """

    exit_code = 8

    def __init__(self, platform: str, what: str, reason: str) -> None:
        super().__init__(f"{platform}: {what} refused: {reason}")
        self.platform = platform
        self.what = what
        self.reason = reason
