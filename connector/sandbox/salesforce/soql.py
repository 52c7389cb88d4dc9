"""A small SOQL parser: a tokenizer and a recursive-descent parser producing a typed syntax tree.

The Salesforce emulator needs to answer the queries the connector (and simple-salesforce's `format_soql`)
actually sends, and to refuse malformed ones the way Salesforce does, so the grammar is a real subset rather
than pattern matching. Field names are kept as written; the emulator resolves them against its schema.

Grammar (keywords are case-insensitive):

    query      := SELECT select FROM ident [WHERE or_expr] [ORDER BY order (',' order)*]
                  [LIMIT int] [OFFSET int]
    select     := COUNT '(' ')' | item (',' item)*
    item       := path | '(' query ')'                      -- a child relationship subquery
    or_expr    := and_expr (OR and_expr)*
    and_expr   := not_expr (AND not_expr)*
    not_expr   := NOT not_expr | '(' or_expr ')' | condition
    condition  := path op literal | path [NOT] IN '(' literal (',' literal)* ')' | path LIKE string
                | path [NOT] IN '(' query ')'                -- semi-join / anti-join
                | path (INCLUDES | EXCLUDES) '(' string (',' string)* ')'
    order      := path [ASC | DESC] [NULLS (FIRST | LAST)]

Where a subquery may stand, and how deep, is Salesforce's semantics, checked by the evaluator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal as TypingLiteral

LiteralKind = TypingLiteral["string", "number", "boolean", "null", "datetime", "date"]
LiteralValue = str | Decimal | bool | None | datetime | date

KEYWORDS = frozenset(
    {
        *("SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "NULL", "TRUE", "FALSE"),
        *("ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "COUNT"),
        *("INCLUDES", "EXCLUDES"),
    }
)
COMPARISON_OPS = frozenset({"=", "!=", "<>", "<", ">", "<=", ">="})


class SoqlSyntaxError(ValueError):
    """The query is not valid SOQL (Salesforce answers MALFORMED_QUERY)."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, number, datetime, date, op, lparen, rparen, comma, eof
    text: str
    pos: int
    value: LiteralValue = None


@dataclass(frozen=True)
class Literal:
    kind: LiteralKind
    value: LiteralValue


FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class Compare:
    path: FieldPath
    op: str  # one of =, !=, <, >, <=, >=  ('<>' is normalised to '!=')
    value: Literal


@dataclass(frozen=True)
class InList:
    path: FieldPath
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    path: FieldPath
    pattern: str


@dataclass(frozen=True)
class SemiJoin:
    """`path IN (SELECT field FROM Object ...)`, or with `negated` the anti-join `NOT IN`."""

    path: FieldPath
    query: Query
    negated: bool


@dataclass(frozen=True)
class Includes:
    """Multi-select picklist `INCLUDES` (`negated`: `EXCLUDES`); each term is one value or 'A;B' (all of)."""

    path: FieldPath
    terms: tuple[str, ...]
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class BoolOp:
    op: TypingLiteral["AND", "OR"]
    operands: tuple[Expr, ...]


Expr = Compare | InList | Like | SemiJoin | Includes | Not | BoolOp


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool = False
    nulls_last: bool | None = None  # None: Salesforce default (NULLS FIRST for ASC, LAST for DESC)


@dataclass(frozen=True)
class Query:
    object_name: str
    fields: tuple[FieldPath, ...]  # empty when count_only
    count_only: bool = False
    where: Expr | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    subqueries: tuple[Query, ...] = ()  # child relationship subqueries; object_name is the relationship


# --- tokenizer -------------------------------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})", re.ASCII
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\w:])", re.ASCII)
_NUMBER = re.compile(r"-?\d+(\.\d+)?(?![\w-])", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
# LIKE keeps \% and \_ escaped so the matcher can tell a literal % from a wildcard.
_LIKE_ESCAPES = {"%": "\\%", "_": "\\_"}


def parse_datetime_literal(text: str) -> datetime:
    """Parse a SOQL dateTime literal such as 2026-11-25T10:00:00Z or ...+01:00."""
    m = _DATETIME.fullmatch(text)
    if not m:
        raise SoqlSyntaxError(f"invalid dateTime literal: {text}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int(Decimal(m.group(7)) * 1_000_000) if m.group(7) else 0
    zone = m.group(8)
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise SoqlSyntaxError(f"invalid dateTime literal: {text}") from exc


def _read_string(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt in _LIKE_ESCAPES:
                out.append(_LIKE_ESCAPES[nxt])
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            else:
                raise SoqlSyntaxError(f"invalid escape sequence \\{nxt} at {i}")
            i += 2
            continue
        out.append(ch)
        i += 1
    raise SoqlSyntaxError(f"unterminated string literal starting at {start}")


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; raise SoqlSyntaxError on a character SOQL does not allow."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            value, end = _read_string(text, i)
            tokens.append(Token("string", text[i:end], i, value))
            i = end
            continue
        if ch in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[ch]
            tokens.append(Token(kind, ch, i))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("op", "!=" if op == "<>" else op, i))
            i += len(op)
            continue
        token = _match_value_or_ident(text, i)
        if token is None:
            raise SoqlSyntaxError(f"unexpected character {ch!r} at position {i}")
        tokens.append(token)
        i += len(token.text)
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _match_value_or_ident(text: str, i: int) -> Token | None:
    if m := _DATETIME.match(text, i):
        return Token("datetime", m.group(0), i, parse_datetime_literal(m.group(0)))
    if m := _DATE.match(text, i):
        try:
            value = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError as exc:
            raise SoqlSyntaxError(f"invalid date literal: {m.group(0)}") from exc
        return Token("date", m.group(0), i, value)
    if m := _NUMBER.match(text, i):
        return Token("number", m.group(0), i, Decimal(m.group(0)))
    if m := _IDENT.match(text, i):
        word = m.group(0)
        kind = "keyword" if word.upper() in KEYWORDS else "ident"
        return Token(kind, word, i)
    return None


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text.upper() in words

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            self.fail(f"expecting '{word}'")
        self.advance()

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            self.fail(f"expecting {kind}")
        return self.advance()

    def fail(self, why: str) -> None:
        shown = self.tok.text or "<end of query>"
        raise SoqlSyntaxError(f"unexpected token: '{shown}' at position {self.tok.pos}, {why}")

    def query(self) -> Query:
        self.expect_kw("SELECT")
        count_only, fields, subqueries = self.select_list()
        self.expect_kw("FROM")
        obj = self.expect("ident").text
        where = None
        if self.is_kw("WHERE"):
            self.advance()
            where = self.or_expr()
        order_by: tuple[OrderItem, ...] = ()
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order_by = self.order_items()
        limit = self.int_clause("LIMIT")
        offset = self.int_clause("OFFSET")
        return Query(obj, fields, count_only, where, order_by, limit, offset, subqueries)

    def top_query(self) -> Query:
        query = self.query()
        if self.tok.kind != "eof":
            self.fail("expecting end of query")
        return query

    def nested_query(self) -> Query:
        """A parenthesised SELECT (the opening parenthesis already read)."""
        query = self.query()
        self.expect("rparen")
        return query

    def select_list(self) -> tuple[bool, tuple[FieldPath, ...], tuple[Query, ...]]:
        if self.is_kw("COUNT"):
            self.advance()
            self.expect("lparen")
            self.expect("rparen")
            return True, (), ()
        fields: list[FieldPath] = []
        subqueries: list[Query] = []
        while True:
            if self.tok.kind == "lparen":
                self.advance()
                subqueries.append(self.nested_query())
            else:
                fields.append(self.path())
            if self.tok.kind != "comma":
                return False, tuple(fields), tuple(subqueries)
            self.advance()

    def path(self) -> FieldPath:
        tok = self.tok
        # Keywords such as LAST or FIRST are not reserved as field names in SOQL.
        if tok.kind == "ident" or (tok.kind == "keyword" and tok.text.upper() in {"FIRST", "LAST"}):
            self.advance()
            return tuple(tok.text.split("."))
        self.fail("expecting a field name")
        raise AssertionError("unreachable")

    def int_clause(self, word: str) -> int | None:
        if not self.is_kw(word):
            return None
        self.advance()
        tok = self.expect("number")
        if not tok.text.isdigit():
            raise SoqlSyntaxError(f"{word} must be a non-negative integer, got {tok.text}")
        return int(tok.text)

    def order_items(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.tok.kind == "comma":
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        path = self.path()
        descending = False
        if self.is_kw("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_last: bool | None = None
        if self.is_kw("NULLS"):
            self.advance()
            if not self.is_kw("FIRST", "LAST"):
                self.fail("expecting FIRST or LAST")
            nulls_last = self.advance().text.upper() == "LAST"
        return OrderItem(path, descending, nulls_last)

    def or_expr(self) -> Expr:
        operands = [self.and_expr()]
        while self.is_kw("OR"):
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else BoolOp("OR", tuple(operands))

    def and_expr(self) -> Expr:
        operands = [self.not_expr()]
        while self.is_kw("AND"):
            self.advance()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else BoolOp("AND", tuple(operands))

    def not_expr(self) -> Expr:
        if self.is_kw("NOT"):
            self.advance()
            return Not(self.not_expr())
        if self.tok.kind == "lparen":
            self.advance()
            inner = self.or_expr()
            self.expect("rparen")
            return inner
        return self.condition()

    def condition(self) -> Expr:
        path = self.path()
        if self.tok.kind == "op":
            op = self.advance().text
            return Compare(path, op, self.literal())
        if self.is_kw("LIKE"):
            self.advance()
            tok = self.expect("string")
            return Like(path, str(tok.value))
        negated = False
        if self.is_kw("NOT"):
            self.advance()
            negated = True
            if not self.is_kw("IN"):
                self.fail("expecting IN")
        if self.is_kw("IN"):
            self.advance()
            if self.tok.kind == "lparen" and self.tokens[self.i + 1].text.upper() == "SELECT":
                self.advance()
                return SemiJoin(path, self.nested_query(), negated)
            return InList(path, self.literal_list(), negated)
        if self.is_kw("INCLUDES", "EXCLUDES"):
            excludes = self.advance().text.upper() == "EXCLUDES"
            self.expect("lparen")
            terms = [str(self.expect("string").value)]
            while self.tok.kind == "comma":
                self.advance()
                terms.append(str(self.expect("string").value))
            self.expect("rparen")
            return Includes(path, tuple(terms), excludes)
        self.fail("expecting an operator")
        raise AssertionError("unreachable")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("lparen")
        values = [self.literal()]
        while self.tok.kind == "comma":
            self.advance()
            values.append(self.literal())
        self.expect("rparen")
        return tuple(values)

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind in {"string", "number", "datetime", "date"}:
            self.advance()
            return Literal(tok.kind, tok.value)  # type: ignore[arg-type]
        if self.is_kw("TRUE", "FALSE"):
            self.advance()
            return Literal("boolean", tok.text.upper() == "TRUE")
        if self.is_kw("NULL"):
            self.advance()
            return Literal("null", None)
        self.fail("expecting a literal value")
        raise AssertionError("unreachable")


def parse(text: str) -> Query:
    """Parse one SOQL query; raise SoqlSyntaxError (MALFORMED_QUERY) when it is not valid."""
    return _Parser(text).top_query()


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a LIKE pattern (% any run, _ one char, \\% and \\_ literal) into a case-insensitive regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
