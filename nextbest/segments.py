"""Customer segments: a marketer's rules over a project's features, parsed once, evaluated over a frame or one row.

A project declares its segments in its project file (`segments:`, inline or a path relative to it; the simulated
bank's default is `nextbest/data/segments.yaml`). Each segment is a rule in a small expression language, parsed by
the recursive-descent parser below (no Python `eval`); the grammar and examples are in docs/decisioning.md:

    rule   := or                 or  := and ("OR" and)*          and := unary ("AND" unary)*
    unary  := "NOT" unary | "(" rule ")" | test
    test   := NAME                                     a segment by name, or a flag / count feature (true when > 0)
            | NAME op value                            op: == = != > >= < <=
            | NAME "between" number "and" number       inclusive
            | NAME ["not"] "in" "[" value ("," value)* "]"
    value  := number | true | false | word | "quoted text"

Three steps, each with its own errors:
1. `parse_segments` (at project load): syntax, references between segments, cycles (`SegmentBook`);
2. `bind_segments` / `project_segments` (at use: a command, the engine's start): every name is a known feature of the
   right kind, a category value is one of its values (`Segments`, against the `FeatureSchema` of the project's
   feature project);
3. `Segments.evaluate(name, frame)` (vectorized, numpy over the frame's columns) and `Segments.contains(name, row)`
   (one customer's feature dict, e.g. the engine's online read): the same compiled rule, the row a frame of one.

Values: a missing value (None / NaN: an unknown customer, no row as of the date) makes its test false, and NOT
negates the result (two-valued logic). Categories are derived from features: `segment` (the policy profile's
segment flags and default), `risk_band` (its risk level and band codes; ordered, so `risk_band <= medium` works) and,
for a bank's tables, every one-hot attribute (`customer_segment in [mass, affluent]`).

`segment_frame` reads, through Feast, the point-in-time features a set of segments needs for every entity known as of
a date (`get_historical_features` with one timestamp for all, in chunks), which `Segments.evaluate` turns into
membership.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from nextbest.base import Frozen
from nextbest.errors import ConfigError, DataError

if TYPE_CHECKING:
    from nextbest.features.project import FeatureProject
    from nextbest.project import Project

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTS = Path(__file__).parent / "data" / "segments.yaml"
_NAME = r"^[a-z][a-z0-9_]*$"
#: the longest rule and the deepest nesting accepted (a rule is config, not a program)
MAX_RULE_CHARS = 4000
MAX_DEPTH = 40
#: entity rows per Feast point-in-time call (bounds memory at a million customers)
CHUNK_ROWS = 200_000
FeatureKind = Literal["number", "count"]
Value = float | str
_OPS = ("==", "!=", ">", ">=", "<", "<=")
_KEYWORDS = frozenset({"and", "or", "not", "in", "between", "true", "false"})


class SegmentError(ConfigError):
    """A segment rule that does not parse, refers to something unknown, or compares a feature with the wrong kind."""


# ==================================================================== the expression language


@dataclass(frozen=True, slots=True)
class Bare:
    """A name alone: a segment reference, or a flag / count feature that is true when > 0."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    name: str
    op: str
    value: Value | bool
    pos: int


@dataclass(frozen=True, slots=True)
class Between:
    name: str
    low: float
    high: float
    pos: int


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    values: tuple[Value | bool, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class All:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    operands: tuple[Node, ...]


Node = Bare | Compare | Between | Member | Not | All | AnyOf
Test = Bare | Compare | Between | Member

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![A-Za-z_])
    | (?P<string>"[^"]*"|'[^']*')
    | (?P<op>>=|<=|!=|==|=|>|<)
    | (?P<punct>[()\[\],])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, op, punct, word, end
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        return self.text.lower() if self.kind == "word" and self.text.lower() in _KEYWORDS else None


def _tokens(rule: str, where: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(rule):
        if rule[pos:].strip() == "":
            break
        m = _TOKEN.match(rule, pos)
        if m is None or m.lastgroup is None:
            start = len(rule) - len(rule[pos:].lstrip())
            raise SegmentError(f"{where}: unexpected {rule[start]!r} at column {start + 1} of `{rule}`")
        kind = m.lastgroup
        out.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    out.append(_Token("end", "", len(rule)))
    return out


class _Parser:
    """Recursive descent over the tokens of one rule (see the module docstring for the grammar)."""

    def __init__(self, rule: str, where: str) -> None:
        if len(rule) > MAX_RULE_CHARS:
            raise SegmentError(f"{where}: rule longer than {MAX_RULE_CHARS} characters")
        self.rule = rule
        self.where = where
        self.tokens = _tokens(rule, where)
        self.i = 0
        self.depth = 0

    def fail(self, message: str, token: _Token | None = None, found: bool = True) -> SegmentError:
        token = token or self.peek()
        what = "the end" if token.kind == "end" else repr(token.text)
        seen = f", found {what}" if found else ""
        return SegmentError(f"{self.where}: {message}{seen} at column {token.pos + 1} of `{self.rule}`")

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.peek()
        if token.text.lower() != text:
            raise self.fail(f"expected {text!r}")
        self.take()

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty rule")
        node = self.or_()
        if self.peek().kind != "end":
            raise self.fail("expected AND, OR or the end of the rule")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().keyword == "or":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def and_(self) -> Node:
        items = [self.unary()]
        while self.peek().keyword == "and":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else All(tuple(items))

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels", found=False)
        try:
            token = self.peek()
            if token.keyword == "not":
                self.take()
                return Not(self.unary())
            if token.text == "(":
                self.take()
                node = self.or_()
                self.expect(")")
                return node
            return self.test()
        finally:
            self.depth -= 1

    def test(self) -> Test:
        token = self.take()
        if token.kind != "word" or token.keyword is not None:
            raise self.fail("expected a feature or segment name", token)
        name, nxt = token.text, self.peek()
        if nxt.kind == "op":
            self.take()
            op = "==" if nxt.text == "=" else nxt.text
            return Compare(name, op, self.value(), token.pos)
        if nxt.keyword == "between":
            self.take()
            low = self.number()
            self.expect("and")
            high = self.number()
            if low > high:
                raise self.fail(f"`{name} between {low:g} and {high:g}`: the low bound is above the high", token, False)
            return Between(name, low, high, token.pos)
        negated = nxt.keyword == "not" and self.peek(1).keyword == "in"
        if nxt.keyword == "in" or negated:
            self.take()
            if negated:
                self.take()
            return Member(name, self.values(), negated, token.pos)
        return Bare(name, token.pos)

    def value(self) -> Value | bool:
        token = self.take()
        if token.kind == "number":
            return float(token.text)
        if token.kind == "string":
            return token.text[1:-1]
        if token.keyword in ("true", "false"):
            return token.keyword == "true"
        if token.kind == "word" and token.keyword is None:
            return token.text
        raise self.fail("expected a value (a number, true/false, a word or quoted text)", token)

    def number(self) -> float:
        token = self.take()
        if token.kind != "number":
            raise self.fail("expected a number", token)
        return float(token.text)

    def values(self) -> tuple[Value | bool, ...]:
        self.expect("[")
        out = [self.value()]
        while self.peek().text == ",":
            self.take()
            out.append(self.value())
        self.expect("]")
        return tuple(out)


def parse_rule(rule: str, where: str = "rule") -> Node:
    """The syntax tree of one rule (SegmentError naming `where`, the column and the rule when it does not parse)."""
    return _Parser(rule, where).parse()


def tests_of(node: Node) -> Iterable[Test]:
    """Every test (leaf) of a rule, left to right."""
    if isinstance(node, Not):
        yield from tests_of(node.operand)
    elif isinstance(node, All | AnyOf):
        for operand in node.operands:
            yield from tests_of(operand)
    else:
        yield node


# ==================================================================== what a project declares


class SegmentSpec(Frozen):
    """One segment: its rule and what it is for."""

    rule: str = Field(min_length=1, max_length=MAX_RULE_CHARS)
    description: str = ""


class SegmentBook(Frozen):
    """A project's segments as declared: syntax, references and cycles checked (features are checked by binding).

    `entity`: the entity the segments are of (default: the served entity); `flags`: features of a bank's tables to
    treat as 0/1 flags (usable alone as a test), beyond the one-hot categories and counts that already are.
    """

    entity: str | None = None
    flags: tuple[str, ...] = ()
    segments: dict[str, SegmentSpec] = Field(default_factory=dict)
    _trees: dict[str, Node] = PrivateAttr(default_factory=dict)

    @field_validator("segments", mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        """`name: "rule"` is short for `name: {rule: "rule"}`."""
        if isinstance(raw, Mapping):
            return {k: ({"rule": v} if isinstance(v, str) else v) for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _parse(self) -> SegmentBook:
        for name, spec in self.segments.items():
            if not re.match(_NAME, name):
                raise ValueError(f"segment name {name!r}: lower case letters, digits and _, starting with a letter")
            self._trees[name] = parse_rule(spec.rule, f"segment {name!r}")
        for name, tree in self._trees.items():
            for test in tests_of(tree):
                if test.name in self.segments and not isinstance(test, Bare):
                    raise SegmentError(
                        f"segment {name!r}: {test.name!r} is a segment, not a feature; refer to it alone "
                        f"(`{test.name}`, `NOT {test.name}`)"
                    )
        self._check_cycles()
        return self

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise SegmentError(f"segments {' -> '.join(cycle)} refer to each other in a cycle")
            state[name] = 1
            for ref in self.references(name):
                visit(ref, [*path, name])
            state[name] = 2

        for name in self.segments:
            visit(name, [])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.segments)

    def tree(self, name: str) -> Node:
        """The parsed rule of a segment (SegmentError naming the known segments when there is none)."""
        if name not in self._trees:
            raise SegmentError(f"unknown segment {name!r}; known: {', '.join(self.names) or 'none'}")
        return self._trees[name]

    def references(self, name: str) -> tuple[str, ...]:
        """The segments one segment's rule refers to directly."""
        tests = tests_of(self.tree(name))
        return tuple(dict.fromkeys(t.name for t in tests if isinstance(t, Bare) and t.name in self.segments))


def parse_segments(raw: object, where: str) -> SegmentBook:
    """Validate a segments mapping (a file's or a project file's inline `segments:`); errors name `where`."""
    if raw is None:
        raw = {}
    if isinstance(raw, Mapping) and "segments" not in raw and not {"entity", "flags"} & set(raw):
        raw = {"segments": raw}  # a bare mapping of name -> rule
    try:
        return SegmentBook.model_validate(raw)
    except SegmentError as exc:
        raise SegmentError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"invalid segments {where}:\n{exc}") from exc


def load_segments(path: str | Path | None = None) -> SegmentBook:
    """Read a segments YAML file (default: the simulated bank's, `nextbest/data/segments.yaml`)."""
    resolved = Path(path) if path is not None else DEFAULT_SEGMENTS
    if not resolved.is_file():
        raise ConfigError(f"segments file {resolved} not found")
    try:
        raw = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"segments file {resolved} is not valid YAML: {exc}") from exc
    return parse_segments(raw, str(resolved))


# ==================================================================== the features a rule may read


@dataclass(frozen=True, slots=True)
class Category:
    """A categorical fact derived from features: one 0/1 flag per value, or an ordinal code feature."""

    name: str
    values: tuple[str, ...]
    flags: tuple[str, ...] = ()  # flags[i] set means values[i]
    default: str | None = None  # the value of a known row with no flag set
    code: str | None = None  # a feature holding the value's index (0 = values[0])
    ordered: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.code,) if self.code is not None else self.flags


@dataclass(frozen=True)
class FeatureSchema:
    """The features segments of one entity may read: kind and view of each, and the derived categories."""

    entity: str
    key: str
    kinds: Mapping[str, FeatureKind]
    views: Mapping[str, str]
    categories: Mapping[str, Category] = field(default_factory=dict)

    def known(self) -> str:
        return ", ".join(sorted([*self.kinds, *self.categories]))


def segment_entity(project: Project, book: SegmentBook | None = None) -> str:
    """The entity a project's segments are of: the book's, else the served entity, else the project's first."""
    if book is not None and book.entity is not None:
        return book.entity
    if project.serving is not None:
        return project.serving.entity
    return next(iter(project.entities))


def feature_schema(project: Project, features: FeatureProject, book: SegmentBook | None = None) -> FeatureSchema:
    """What a segment of `project` may read: every materialized feature of its entity (int64 ones are counts or
    flags, usable alone), the one-hot categories and counts of a table project, and the policy profile's categories.
    """
    entity = segment_entity(project, book)
    kinds: dict[str, FeatureKind] = {}
    views: dict[str, str] = {}
    for table in features.view_tables():
        if features.view_entity(table.name) != entity:
            continue
        for name, dtype in table.fields.items():
            if name not in kinds:
                kinds[name] = "count" if dtype == "int64" else "number"
                views[name] = table.name
    categories = _table_categories(project, entity, kinds)
    categories.update(_profile_categories(project, kinds))
    for flag in book.flags if book is not None else ():
        if flag not in kinds:
            raise SegmentError(f"segments flags: unknown feature {flag!r}; known: {', '.join(sorted(kinds))}")
        kinds[flag] = "count"
    categories = {n: c for n, c in categories.items() if n not in kinds}
    return FeatureSchema(entity, project.entities[entity].key, kinds, views, categories)


def _table_categories(project: Project, entity: str, kinds: dict[str, FeatureKind]) -> dict[str, Category]:
    """A table project's one-hot attributes as categories (their flags, and every count aggregation, as counts)."""
    from nextbest.onboarding.config import aggregation_feature_names, attribute_feature_names

    out: dict[str, Category] = {}
    if project.tables is None:
        return out
    for view in project.tables.feature_views:
        if view.entity != entity:
            continue
        for attr in view.attributes:
            if attr.categories is None:
                continue
            names = attribute_feature_names(attr)
            out[attr.name] = Category(attr.name, tuple(c for _, c in names if c), tuple(n for n, _ in names))
            kinds.update({n: "count" for n, _ in names if n in kinds})
        for agg in view.aggregations:
            if agg.fn == "count":
                kinds.update({n: "count" for n, _, _ in aggregation_feature_names(agg) if n in kinds})
    return out


def _profile_categories(project: Project, kinds: Mapping[str, FeatureKind]) -> dict[str, Category]:
    """`segment` and `risk_band` from the policy profile, when the features it names exist."""
    out: dict[str, Category] = {}
    profile = project.policy.profile if project.policy is not None else None
    if profile is None:
        return out
    flags = {seg: f for seg, f in profile.segment_flags.items() if f in kinds}
    if flags and len(flags) == len(profile.segment_flags):
        values = tuple(flags) + tuple(d for d in (profile.default_segment,) if d and d not in flags)
        out["segment"] = Category("segment", values, tuple(flags.values()), profile.default_segment)
    if profile.risk_level in kinds:
        out["risk_band"] = Category("risk_band", tuple(profile.risk_band_codes), code=profile.risk_level, ordered=True)
    return out


# ==================================================================== evaluation


class _Columns:
    """The columns of a frame (or of one row) as float arrays and category codes, each converted once."""

    def __init__(self, data: pd.DataFrame | Mapping[str, Any], n: int | None = None, strict: bool = True) -> None:
        self.data = data
        self.strict = strict
        if n is not None:
            self.n = n
        elif isinstance(data, pd.DataFrame):
            self.n = len(data)
        else:
            self.n = len(next(iter(data.values()), ()))
        self._numbers: dict[str, np.ndarray] = {}
        self._codes: dict[str, np.ndarray] = {}
        self.segments: dict[str, np.ndarray] = {}

    def number(self, name: str) -> np.ndarray:
        got = self._numbers.get(name)
        if got is None:
            if name not in self.data:
                if self.strict:
                    raise DataError(f"the frame has no column {name!r}, which a segment reads")
                got = np.full(self.n, np.nan)
            else:
                got = _as_numbers(self.data[name])
            self._numbers[name] = got
        return got

    def codes(self, category: Category) -> np.ndarray:
        """Index of each row's value in `category.values`; -1 where unknown."""
        got = self._codes.get(category.name)
        if got is None:
            got = _category_codes(category, self)
            self._codes[category.name] = got
        return got


def _as_numbers(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype("float64", copy=False)
    if isinstance(values, pd.Series):
        if values.dtype.kind in "fiub":
            return values.to_numpy(dtype="float64", na_value=np.nan)
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.fromiter((_number(v) for v in values), dtype="float64")


def _number(value: object) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _category_codes(category: Category, cols: _Columns) -> np.ndarray:
    if category.code is not None:
        level = cols.number(category.code)
        valid = (level >= 0) & (level < len(category.values))  # NaN: false
        return np.where(valid, level, -1.0).astype("int64")
    flags = np.column_stack([cols.number(f) for f in category.flags])
    known = ~np.isnan(flags).all(axis=1)
    on = flags > 0  # NaN: false
    first = np.where(on.any(axis=1), on.argmax(axis=1), -1)
    if category.default is not None:
        first = np.where(first < 0, category.values.index(category.default), first)
    return np.where(known, first, -1)


Evaluator = Callable[[_Columns], np.ndarray]


_COMPARISONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": np.equal,
    "!=": lambda x, v: np.not_equal(x, v) & ~np.isnan(x),  # a missing value is not "different": it is unknown
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


def _compare(x: np.ndarray, op: str, v: float) -> np.ndarray:
    """x op v elementwise; NaN (missing) compares false under every operator."""
    return _COMPARISONS[op](x, v)


def _all(parts: Sequence[np.ndarray]) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def _any(parts: Sequence[np.ndarray]) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out


class Segments:
    """A project's segments bound to its features: validated, compiled, evaluated over a frame or one row."""

    def __init__(self, book: SegmentBook, schema: FeatureSchema) -> None:
        self.book = book
        self.schema = schema
        for name in book.names:
            if name in schema.kinds or name in schema.categories:
                raise SegmentError(f"segment {name!r} has the name of a feature; rename the segment")
        self._compiled: dict[str, Evaluator] = {}
        self._reads: dict[str, tuple[str, ...]] = {}
        for name in book.names:
            self._compiled[name] = self._compile(name, book.tree(name))

    @property
    def names(self) -> tuple[str, ...]:
        return self.book.names

    @property
    def entity(self) -> str:
        return self.schema.entity

    def spec(self, name: str) -> SegmentSpec:
        self.book.tree(name)  # the unknown-segment error
        return self.book.segments[name]

    # ---------------------------------------------------------------- binding
    def _compile(self, segment: str, node: Node) -> Evaluator:
        if isinstance(node, Not):
            inner = self._compile(segment, node.operand)
            return lambda cols: ~inner(cols)
        if isinstance(node, All | AnyOf):
            parts = [self._compile(segment, n) for n in node.operands]
            combine = _all if isinstance(node, All) else _any
            return lambda cols: combine([p(cols) for p in parts])
        return self._compile_test(segment, node)

    def _compile_test(self, segment: str, test: Test) -> Evaluator:
        name = test.name
        if isinstance(test, Bare) and name in self.book.segments:
            return lambda cols: self._evaluate(name, cols)
        if name in self.schema.categories:
            return self._category_test(segment, test, self.schema.categories[name])
        kind = self.schema.kinds.get(name)
        if kind is None:
            close = difflib.get_close_matches(name, [*self.schema.kinds, *self.schema.categories, *self.names], 3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SegmentError(
                f"segment {segment!r}: unknown feature {name!r} of entity {self.schema.entity!r}{hint}; "
                f"known features: {self.schema.known()}; segments: {', '.join(self.names)}"
            )
        if isinstance(test, Bare):
            if kind != "count":
                raise SegmentError(
                    f"segment {segment!r}: feature {name!r} is a number, not a flag; compare it "
                    f"(e.g. `{name} > 0`, `{name} between 1 and 10`)"
                )
            return lambda cols: _compare(cols.number(name), ">", 0.0)
        if isinstance(test, Between):
            low, high = test.low, test.high
            return lambda cols: _compare(cols.number(name), ">=", low) & _compare(cols.number(name), "<=", high)
        values = [self._numeric(segment, name, v) for v in (test.values if isinstance(test, Member) else [test.value])]
        if isinstance(test, Member):
            negated, wanted = test.negated, np.array(values)
            return lambda cols: _member(cols.number(name), wanted, negated)
        op, v = test.op, values[0]
        return lambda cols: _compare(cols.number(name), op, v)

    @staticmethod
    def _numeric(segment: str, name: str, value: Value | bool) -> float:
        if isinstance(value, str):
            raise SegmentError(
                f"segment {segment!r}: feature {name!r} is a number; {value!r} is text (compare with a number)"
            )
        return float(value)

    def _category_test(self, segment: str, test: Test, category: Category) -> Evaluator:
        name = category.name
        known = ", ".join(category.values)
        if isinstance(test, Bare | Between):
            form = "alone" if isinstance(test, Bare) else "with between"
            raise SegmentError(
                f"segment {segment!r}: {name!r} is a category ({known}); it cannot be used {form}: "
                f"write `{name} == {category.values[0]}` or `{name} in [...]`"
            )
        raw = test.values if isinstance(test, Member) else (test.value,)
        codes = []
        for v in raw:
            if not isinstance(v, str) or v not in category.values:
                raise SegmentError(f"segment {segment!r}: {name!r} has no value {v!r}; its values: {known}")
            codes.append(category.values.index(v))
        if isinstance(test, Member):
            wanted, negated = np.array(codes), test.negated
            return lambda cols: _member_codes(cols.codes(category), wanted, negated)
        if test.op not in ("==", "!=") and not category.ordered:
            raise SegmentError(f"segment {segment!r}: {name!r} is an unordered category; use == != in, not {test.op}")
        op, code = test.op, float(codes[0])
        return lambda cols: _compare(_codes_as_numbers(cols.codes(category)), op, code)

    # ---------------------------------------------------------------- reads and evaluation
    def reads(self, names: str | Iterable[str] | None = None) -> tuple[str, ...]:
        """The raw features the given segments read (their references' too), in a stable order."""
        names = self.names if names is None else [names] if isinstance(names, str) else list(names)
        out: dict[str, None] = {}
        for name in names:
            out.update(dict.fromkeys(self._reads_of(name)))
        return tuple(out)

    def missing_reads(self, names: Iterable[str], available: Iterable[str]) -> tuple[str, ...]:
        """The features the given segments read that `available` (e.g. the fields of an online read) lacks: what an
        engine checks at start, so that `contains` never meets a feature its read does not cover."""
        have = set(available)
        return tuple(f for f in self.reads(list(names)) if f not in have)

    def _reads_of(self, name: str) -> tuple[str, ...]:
        got = self._reads.get(name)
        if got is not None:
            return got
        if name not in self._reads:
            out: dict[str, None] = {}
            for test in tests_of(self.book.tree(name)):
                if isinstance(test, Bare) and test.name in self.book.segments:
                    out.update(dict.fromkeys(self._reads_of(test.name)))
                elif test.name in self.schema.categories:
                    out.update(dict.fromkeys(self.schema.categories[test.name].reads))
                else:
                    out[test.name] = None
            self._reads[name] = tuple(out)
        return self._reads[name]

    def _evaluate(self, name: str, cols: _Columns) -> np.ndarray:
        got = cols.segments.get(name)
        if got is None:
            compiled = self._compiled.get(name)
            if compiled is None:
                self.book.tree(name)  # raises the unknown-segment error
                raise AssertionError(name)
            got = np.asarray(compiled(cols), dtype=bool)
            cols.segments[name] = got
        return got

    def evaluate(self, name: str, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Membership of every row of `frame` (a DataFrame or a mapping of columns), as a bool array."""
        return self._evaluate(name, _Columns(frame)).copy()

    def evaluate_all(self, frame: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
        """One bool column per segment (default: all), sharing the conversions of the frame's columns."""
        cols = _Columns(frame)
        return pd.DataFrame({n: self._evaluate(n, cols) for n in (names or self.names)}, index=frame.index)

    def contains(self, name: str, features: Mapping[str, object]) -> bool:
        """Whether one customer (their feature dict, e.g. the online read) is in the segment: the same compiled
        rule as `evaluate`, over a frame of one row. A feature the dict lacks is an error (the read must cover
        `reads(name)`)."""
        row = {f: [features[f]] if f in features else _missing(f, name) for f in self._reads_of(name)}
        return bool(self._evaluate(name, _Columns(row, n=1))[0])

    def memberships(self, features: Mapping[str, object], names: Iterable[str]) -> frozenset[str]:
        """The segments among `names` one customer is in (one conversion of their features)."""
        names = list(names)
        wanted = self.reads(names)
        row = {f: [features[f]] if f in features else _missing(f, ",".join(names)) for f in wanted}
        cols = _Columns(row, n=1)
        return frozenset(n for n in names if self._evaluate(n, cols)[0])


def _missing(feature: str, segment: str) -> list[object]:
    raise DataError(f"segment {segment!r} reads feature {feature!r}, which the customer's features do not include")


def _member(x: np.ndarray, wanted: np.ndarray, negated: bool) -> np.ndarray:
    inside = np.isin(x, wanted)
    return (~inside & ~np.isnan(x)) if negated else inside


def _member_codes(codes: np.ndarray, wanted: np.ndarray, negated: bool) -> np.ndarray:
    inside = np.isin(codes, wanted)
    return (~inside & (codes >= 0)) if negated else inside


def _codes_as_numbers(codes: np.ndarray) -> np.ndarray:
    return np.where(codes >= 0, codes.astype("float64"), np.nan)


# ==================================================================== a project's segments


def bind_segments(book: SegmentBook, schema: FeatureSchema) -> Segments:
    """Validate a book against a feature schema (SegmentError naming the segment, the feature, the known ones)."""
    return Segments(book, schema)


def project_segments(project: Project, features: FeatureProject) -> Segments:
    """The project's segments validated against its feature project (ConfigError when it declares none)."""
    book = project.segments
    if book is None or not book.names:
        raise ConfigError(
            f"project {project.name!r} ({project.source}) declares no segments: add a `segments:` section "
            "(docs/decisioning.md)"
        )
    return bind_segments(book, feature_schema(project, features, book))


def parse_as_of(value: str | date | datetime | None) -> datetime | None:
    """A date (00:00 UTC that day) or an ISO datetime (naive = UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ConfigError(f"as-of {value!r} is not a date (YYYY-MM-DD) or an ISO datetime") from exc
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ==================================================================== membership as of a date, through Feast


@dataclass(frozen=True)
class Membership:
    """Who is in a segment as of a date: the member keys, out of how many entities known then."""

    segment: str
    as_of: datetime
    known: int
    members: np.ndarray

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def share(self) -> float:
        return self.size / self.known if self.known else 0.0


def _tables(features: FeatureProject, views: Iterable[str]) -> list[Any]:
    wanted = set(views)
    return [t for t in features.view_tables() if t.name in wanted]


def _newest(tables: Sequence[Any]) -> datetime:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    newest: datetime | None = None
    for t in tables:
        if not Path(t.path).is_file():
            raise DataError(f"feature table {t.path} missing: build the project's features first")
        column = pq.read_table(t.path, columns=[t.timestamp]).column(0)
        value = pc.max(column).as_py() if len(column) else None
        if value is not None and (newest is None or value > newest):
            newest = value
    if newest is None:
        raise DataError("the feature tables the segments read are empty")
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


def entity_keys(tables: Sequence[Any], key: str, as_of: datetime) -> np.ndarray:
    """The distinct keys with a row at or before `as_of` in any of the tables (what exists as of then), sorted."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        parts = " UNION ".join(f'SELECT "{key}" AS k FROM read_parquet(?) WHERE "{t.timestamp}" <= ?' for t in tables)
        params: list[Any] = []
        for t in tables:
            params += [str(t.path), as_of]
        keys = con.execute(f"SELECT DISTINCT k FROM ({parts}) ORDER BY k", params).df()["k"]
    finally:
        con.close()
    return keys.to_numpy()


def segment_frame(
    segments: Segments,
    features: FeatureProject,
    names: Sequence[str] | None = None,
    as_of: datetime | None = None,
    keys: Sequence[Any] | np.ndarray | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[pd.DataFrame, datetime]:
    """The point-in-time features `names` read (default: all segments) of every entity as of `as_of` (default: the
    newest row of the tables read), through Feast's offline store; (frame keyed by the entity key, as_of).

    Entities are those with a row at or before `as_of` (or `keys`); a row whose every read feature is missing as of
    then (expired by the view's TTL, or not yet known) is left out: the entity is unknown at that date.
    """
    reads = segments.reads(names)
    schema = segments.schema
    by_view: dict[str, list[str]] = {}
    for f in reads:
        by_view.setdefault(schema.views[f], []).append(f)
    tables = _tables(features, by_view)
    as_of = as_of or _newest(tables)
    all_keys = entity_keys(tables, schema.key, as_of) if keys is None else np.asarray(keys)
    refs = [f"{view}:{f}" for view, fs in by_view.items() for f in fs]
    store = features.store()
    parts: list[pd.DataFrame] = []
    for start in range(0, len(all_keys), chunk_rows):
        entity_df = pd.DataFrame({schema.key: all_keys[start : start + chunk_rows]})
        entity_df["event_timestamp"] = pd.Timestamp(as_of)
        got = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=False).to_df()
        parts.append(got[[schema.key, *reads]])
    if not parts:
        return pd.DataFrame(columns=[schema.key, *reads]), as_of
    frame = pd.concat(parts, ignore_index=True)
    known = frame[list(reads)].notna().any(axis=1)
    if not known.all():
        logger.info("%d of %d entities have no features as of %s", int((~known).sum()), len(frame), as_of)
    frame = frame.loc[known].sort_values(schema.key, kind="stable").reset_index(drop=True)
    return frame, as_of


def members_as_of(
    segments: Segments,
    features: FeatureProject,
    names: Sequence[str],
    as_of: datetime | None = None,
    keys: Sequence[Any] | np.ndarray | None = None,
) -> list[Membership]:
    """Each segment's members as of a date (one Feast read for all of them)."""
    for name in names:
        segments.spec(name)
    frame, resolved = segment_frame(segments, features, names, as_of, keys)
    inside = segments.evaluate_all(frame, names) if len(frame) else None
    key = segments.schema.key
    out = []
    for name in names:
        members = frame.loc[inside[name].to_numpy(), key].to_numpy() if inside is not None else np.array([])
        out.append(Membership(name, resolved, len(frame), members))
    return out
