"""A SOQL subset as pure functions: parse a query, test a row against its WHERE, order rows.

Enough SOQL for a loader's reconciliation and idempotency checks — field lists with
relationship paths, ``COUNT()``, ``=``/``!=``/``<``/``>``/``LIKE``/``IN``/``NOT IN``,
``AND``/``OR``/``NOT`` with parentheses, ``ORDER BY``, ``LIMIT``, ``OFFSET`` — with
SOQL's own semantics: case-insensitive text comparison, ``!=`` matching nulls, and
nulls first in ascending order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Literal, TypeAlias

Value: TypeAlias = str | int | float | bool | date | datetime | None
"""A literal in a query: text, number, boolean, date, datetime or null."""


class SoqlError(ValueError):
    """A query this parser cannot read; the server answers MALFORMED_QUERY."""


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op value``; ``value`` is a tuple for IN / NOT IN."""

    field: str
    op: Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "IN", "NOT IN"]
    value: Value | tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Junction:
    """AND or OR over two or more sub-expressions."""

    op: Literal["AND", "OR"]
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    item: Expr


Expr: TypeAlias = Condition | Junction | Negation


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: str
    descending: bool = False
    nulls_last: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed ``SELECT``; ``count`` means ``SELECT COUNT()`` and ``fields`` is empty."""

    sobject: str
    fields: tuple[str, ...] = ()
    where: Expr | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    offset: int | None = None
    count: bool = False


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET"}
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "name" else self.text


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SoqlError(_at(text, position, f"unexpected character: '{text[position]}'"))
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("eof", "<EOF>", len(text)))
    return tokens


def _at(text: str, position: int, message: str) -> str:
    """Salesforce's error shape: the query, a caret, the row/column and the complaint."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"\n{text}\n{' ' * (column - 1)}^\nERROR at Row:{line}:Column:{column}\n{message}"


def _unquote(literal: str) -> str:
    body, out, index = literal[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            index += 1
            char = _ESCAPES.get(body[index], body[index])
        out.append(char)
        index += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def fail(self, token: _Token | None = None) -> SoqlError:
        token = token or self.current
        return SoqlError(_at(self.text, token.position, f"unexpected token: '{token.text}'"))

    def take(self) -> _Token:
        token = self.current
        self.index += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.current.upper in words:
            self.index += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            raise self.fail()

    def name(self) -> str:
        token = self.current
        if token.kind != "name" or token.upper in _KEYWORDS:
            raise self.fail()
        self.index += 1
        return token.text

    def query(self) -> Query:
        self.expect("SELECT")
        count, fields = self.select_list()
        self.expect("FROM")
        sobject = self.name()
        where = self.expr() if self.accept("WHERE") else None
        order = self.order_by() if self.accept("ORDER") else ()
        limit = self.integer() if self.accept("LIMIT") else None
        offset = self.integer() if self.accept("OFFSET") else None
        if self.current.kind != "eof":
            raise self.fail()
        return Query(sobject, fields, where, order, limit, offset, count)

    def select_list(self) -> tuple[bool, tuple[str, ...]]:
        if self.current.upper == "COUNT" and self.tokens[self.index + 1].text == "(":
            self.index += 2
            self.expect(")")
            return True, ()
        fields = [self.name()]
        while self.accept(","):
            fields.append(self.name())
        return False, tuple(fields)

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.isdigit():
            raise self.fail(token)
        return int(token.text)

    def order_by(self) -> tuple[OrderBy, ...]:
        self.expect("BY")
        items = [self.order_item()]
        while self.accept(","):
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderBy:
        field = self.name()
        descending = self.accept("DESC")
        if not descending:
            self.accept("ASC")
        nulls_last = descending
        if self.accept("NULLS"):
            if self.accept("LAST"):
                nulls_last = True
            else:
                self.expect("FIRST")
                nulls_last = False
        return OrderBy(field, descending, nulls_last)

    def expr(self) -> Expr:
        return self.junction("OR", self.conjunction)

    def conjunction(self) -> Expr:
        return self.junction("AND", self.unary)

    def junction(self, word: Literal["AND", "OR"], operand: Callable[[], Expr]) -> Expr:
        items = [operand()]
        while self.accept(word):
            items.append(operand())
        return items[0] if len(items) == 1 else Junction(word, tuple(items))

    def unary(self) -> Expr:
        if self.accept("NOT"):
            return Negation(self.unary())
        if self.accept("("):
            inner = self.expr()
            self.expect(")")
            return inner
        return self.condition()

    def condition(self) -> Condition:
        field = self.name()
        token = self.take()
        if token.kind == "op":
            op = "!=" if token.text == "<>" else token.text
            return Condition(field, op, self.literal())  # type: ignore[arg-type]
        if token.upper == "LIKE":
            return Condition(field, "LIKE", self.literal())
        if token.upper == "IN":
            return Condition(field, "IN", self.literal_list())
        if token.upper == "NOT" and self.accept("IN"):
            return Condition(field, "NOT IN", self.literal_list())
        raise self.fail(token)

    def literal_list(self) -> tuple[Value, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return tuple(values)

    def literal(self) -> Value:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "date":
            return date.fromisoformat(token.text)
        if token.kind == "datetime":
            return datetime.fromisoformat(token.text).astimezone(UTC)
        if token.kind == "name" and token.upper in {"NULL", "TRUE", "FALSE"}:
            return {"NULL": None, "TRUE": True, "FALSE": False}[token.upper]
        raise self.fail(token)


def parse(text: str) -> Query:
    """Parse one SOQL query, or raise :class:`SoqlError` pointing at the offending token."""
    return _Parser(text).query()


def fields_of(expr: Expr | None) -> Iterable[str]:
    """Every field path a WHERE expression reads."""
    if expr is None:
        return
    if isinstance(expr, Condition):
        yield expr.field
    elif isinstance(expr, Negation):
        yield from fields_of(expr.item)
    else:
        for item in expr.items:
            yield from fields_of(item)


def map_literals(expr: Expr, change: Callable[[str, Value], Value]) -> Expr:
    """The same expression with every literal replaced by ``change(field, literal)``."""
    if isinstance(expr, Negation):
        return Negation(map_literals(expr.item, change))
    if isinstance(expr, Junction):
        return Junction(expr.op, tuple(map_literals(item, change) for item in expr.items))
    if isinstance(expr.value, tuple):
        return Condition(expr.field, expr.op, tuple(change(expr.field, v) for v in expr.value))
    return Condition(expr.field, expr.op, change(expr.field, expr.value))


@lru_cache(maxsize=256)
def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _comparable(stored: Any, literal: Value) -> Any:
    """``stored`` in the literal's terms: text folded, Salesforce date/datetime text parsed."""
    if isinstance(literal, datetime) and isinstance(stored, str):
        return datetime.fromisoformat(stored).astimezone(UTC)
    if isinstance(literal, date) and not isinstance(literal, datetime) and isinstance(stored, str):
        return date.fromisoformat(stored[:10])
    if isinstance(stored, str):
        return stored.casefold()
    return stored


def _fold(literal: Value) -> Value:
    return literal.casefold() if isinstance(literal, str) else literal


def _equal(stored: Any, literal: Value) -> bool:
    if literal is None or stored is None:
        return stored is None and literal is None
    try:
        return bool(_comparable(stored, literal) == _fold(literal))
    except ValueError:
        return False


def _ordered(stored: Any, op: str, literal: Value) -> bool:
    if stored is None or literal is None:
        return False
    try:
        left, right = _comparable(stored, literal), _fold(literal)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except (TypeError, ValueError):
        return False


def _holds(condition: Condition, stored: Any) -> bool:
    op, literal = condition.op, condition.value
    if op == "IN" or op == "NOT IN":
        values = literal if isinstance(literal, tuple) else (literal,)
        found = any(_equal(stored, value) for value in values)
        return found if op == "IN" else not found
    if isinstance(literal, tuple):
        return False
    if op == "=":
        return _equal(stored, literal)
    if op == "!=":
        return not _equal(stored, literal)
    if op == "LIKE":
        return (
            isinstance(stored, str)
            and isinstance(literal, str)
            and bool(_like(literal).fullmatch(stored))
        )
    return _ordered(stored, op, literal)


def evaluate(expr: Expr, value_of: Callable[[str], Any]) -> bool:
    """Whether a row satisfies ``expr``; ``value_of(path)`` reads one field path of the row."""
    if isinstance(expr, Condition):
        return _holds(expr, value_of(expr.field))
    if isinstance(expr, Negation):
        return not evaluate(expr.item, value_of)
    if expr.op == "AND":
        return all(evaluate(item, value_of) for item in expr.items)
    return any(evaluate(item, value_of) for item in expr.items)


def _sort_value(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def order_rows(
    rows: Sequence[Any], order: Sequence[OrderBy], value_of: Callable[[Any, str], Any]
) -> list[Any]:
    """``rows`` sorted by ``order``: text case-insensitively, nulls where each item asks."""
    ordered = list(rows)
    for item in reversed(order):
        present = [row for row in ordered if value_of(row, item.field) is not None]
        missing = [row for row in ordered if value_of(row, item.field) is None]
        present.sort(
            key=lambda row: _sort_value(value_of(row, item.field)), reverse=item.descending
        )
        ordered = present + missing if item.nulls_last else missing + present
    return ordered
