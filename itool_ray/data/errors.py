"""Error policy shared by every loader: ``DataError``, ``LoadReport`` and ``LoadResult``.

A loader reads records one by one. A malformed record becomes a :class:`DataError` naming
the file, the line number (or the record id / list index), the field and what was expected.
The caller picks the policy with ``on_error``:

* ``"raise"`` (default): the first bad record stops the load with its ``DataError``.
* ``"skip"``: bad records are dropped, counted in the :class:`LoadReport` (the first
  ``max_error_messages`` messages are kept) and one warning with the count is logged at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from itool_ray.data.sample import Sample

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")


class DataError(ValueError):
    """A malformed source record.

    ``str(err)`` reads ``"<file>:<line> [record <id>]: field '<field>': expected <expected>
    (<detail>)"``; every part is also an attribute so callers can inspect it.
    """

    def __init__(
        self,
        *,
        file: str | None = None,
        line: int | None = None,
        record_id: str | None = None,
        field: str | None = None,
        expected: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.record_id = record_id
        self.field = field
        self.expected = expected
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.file or "<data>"
        if self.line is not None:
            where += f":{self.line}"
        if self.record_id is not None:
            where += f" [record {clip(self.record_id, 80)}]"
        what = []
        if self.field is not None:
            what.append(f"field {clip(self.field, 120)!r}")
        if self.expected is not None:
            what.append(f"expected {self.expected}")
        msg = where + ": " + (": ".join(what) if what else "malformed record")
        if self.detail:
            msg += f" ({clip(self.detail, 300)})"
        return msg

    @classmethod
    def from_exception(cls, exc: BaseException, *, expected: str) -> DataError:
        """``exc`` when it is a ``DataError``, else one whose detail is ``exc``'s type and
        message: any failure while converting a record is that record's error."""
        if isinstance(exc, DataError):
            return exc
        return cls(expected=expected, detail=f"{type(exc).__name__}: {exc}")

    def located(
        self, *, file: str | None = None, line: int | None = None, record_id: str | None = None
    ) -> DataError:
        """A copy with the location filled in where this error did not know it yet."""
        return DataError(
            file=self.file or file,
            line=self.line if self.line is not None else line,
            record_id=self.record_id if self.record_id is not None else record_id,
            field=self.field,
            expected=self.expected,
            detail=self.detail,
        )


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out (a record id,
    field or detail taken from the data can be arbitrarily long)."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class SourceUnavailableError(RuntimeError):
    """A remote source (the Hugging Face hub) or an optional package cannot be reached."""


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


@dataclass
class LoadReport:
    """Counts for one load. ``records`` = records read, good or bad.

    Attributes:
        source: loader name (``toolace``, ``seal-tools``...).
        path: what was read (file or hub name).
        on_error: the policy in force.
        records: records read (a ToolACE dialogue counts once even if it gives many samples).
        samples: samples produced.
        skipped: bad records dropped (always 0 under ``on_error="raise"``).
        filtered: good records left out on purpose by a loader option (not errors).
        errors: the first ``max_error_messages`` error messages.
    """

    source: str
    path: str = ""
    on_error: OnError = "raise"
    max_error_messages: int = 20
    records: int = 0
    samples: int = 0
    skipped: int = 0
    filtered: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_on_error(self.on_error)
        if self.max_error_messages < 0:
            raise ValueError("max_error_messages must be >= 0")

    def fail(self, err: DataError) -> None:
        """Apply the policy to one bad record: raise it, or count it and keep its message."""
        if self.on_error == "raise":
            raise err
        self.skipped += 1
        if len(self.errors) < self.max_error_messages:
            self.errors.append(str(err))

    def finish(self) -> LoadReport:
        """Log one warning when records were skipped; returns ``self``."""
        if self.skipped:
            logger.warning(
                "%s: skipped %d malformed record(s) of %d in %s; first: %s",
                self.source,
                self.skipped,
                self.records,
                self.path,
                self.errors[0] if self.errors else "-",
            )
        return self

    def summary(self) -> str:
        return (
            f"{self.source} {self.path}: {self.records} records, {self.samples} samples, "
            f"{self.skipped} skipped, {self.filtered} filtered"
        )


@dataclass(frozen=True)
class LoadResult:
    """What ``load_*`` returns: the samples (a tuple, in source order) and the report.

    Iterable and sized, so ``for s in load_bfcl("simple")`` and ``len(...)`` work.
    """

    samples: tuple[Sample, ...]
    report: LoadReport

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def collect(samples: Iterator[Sample], report: LoadReport) -> LoadResult:
    """Drain a loader generator (which updates ``report``) into a :class:`LoadResult`."""
    out = tuple(samples)
    report.samples = len(out)
    return LoadResult(out, report.finish())
