"""Errors and problem reports.

Every error a user can cause is a :class:`CPAError`. The CLI turns it into a short message and a
non-zero exit code; nothing a user types should ever end in a traceback.

A worksheet is checked as a whole: each problem found becomes a :class:`Problem` that says where
it is (file, line or cell, table, column), what was found, what was expected and how to fix it.
All problems are collected and reported together (:class:`WorksheetError`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class CPAError(Exception):
    """Base class of every error cpa raises for bad input or bad usage."""


class _ValueTextError(CPAError, ValueError):
    """A piece of text a user typed that cannot be read; ``kind`` names what it should be."""

    kind = "value"

    def __init__(self, text: str, reason: str, fix: str = ""):
        super().__init__(text, reason, fix)
        self.text = text
        self.reason = reason
        self.fix = fix

    def __str__(self) -> str:
        msg = f"{self.kind} {self.text!r}: {self.reason}"
        return f"{msg}. {self.fix}" if self.fix else msg


class UnitError(_ValueTextError):
    """A unit string that cannot be read, or a unit of the wrong dimension."""

    kind = "unit"


class NumberError(_ValueTextError):
    """A number that cannot be read, or that is ambiguous without a declared locale."""

    kind = "number"


class FactorError(CPAError, LookupError):
    """A factor (calorific value, emission factor, TOE factor) that is not known."""


class CalculationError(CPAError, ValueError):
    """Input that is valid on its own but makes a calculation impossible."""


@dataclass
class Problem:
    """One problem found in an input file.

    ``severity`` is ``"error"`` (the file cannot be used) or ``"warning"`` (it can, but a person
    should look). ``line`` is a 1-based line of a text worksheet; ``cell`` is an ``A1`` reference
    of a workbook (then ``table`` is the sheet).
    """

    file: str
    message: str
    found: str = ""
    expected: str = ""
    fix: str = ""
    table: str = ""
    column: str = ""
    line: int | None = None
    cell: str = ""
    severity: str = "error"
    code: str = ""

    @property
    def location(self) -> str:
        where = self.file
        if self.cell:
            where += f": {self.table}!{self.cell}" if self.table else f": {self.cell}"
        elif self.line is not None:
            where += f":{self.line}"
        parts = []
        if self.table and not self.cell:
            parts.append(self.table)
        if self.column:
            parts.append(self.column)
        if parts:
            where += f" [{'.'.join(parts)}]"
        return where

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        if self.found:
            text += f"\n    found:    {self.found}"
        if self.expected:
            text += f"\n    expected: {self.expected}"
        if self.fix:
            text += f"\n    fix:      {self.fix}"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class WorksheetError(CPAError):
    """A worksheet with one or more errors; ``problems`` holds all of them (warnings too)."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(self.file)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def __str__(self) -> str:
        n = len(self.errors)
        head = f"{self.file}: {n} error{'s' if n != 1 else ''}"
        return head + "\n" + "\n".join(str(p) for p in self.problems)
