"""The expression language: a small boolean expression over a document's fields, parsed
when it is saved (errors carry the position) and evaluated without ``eval``. It is the
account filter of an integration config (over an account, ``FIELDS``) and the calculation
of a notification rule (over an event's fields, checked against the event's JSON Schema by
``check``).

    expr        := or_expr
    or_expr     := and_expr ("OR" and_expr)*
    and_expr    := not_expr ("AND" not_expr)*
    not_expr    := "NOT" not_expr | comparison
    comparison  := operand (("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
    operand     := path | STRING | NUMBER | "true" | "false" | "null" | "(" expr ")"
    path        := FIELD ("." NAME)*      FIELD is one of the allowed root fields

The allowed root fields are a parameter of ``parse`` (the account filter's are ``FIELDS``).
Keywords are case-insensitive. Strings are in single or double quotes (backslash escapes
the quote). ``customFields`` is accepted for ``custom_fields``. A missing field is null; a
comparison between values of different types is false, except ``=``/``!=`` with null.

Bounds, checked while parsing so that no input can exhaust the stack: at most
``MAX_LENGTH`` characters, and at most ``MAX_DEPTH`` levels of nesting, counting each
open parenthesis and each ``NOT`` that encloses an operand. Past either, ``parse`` raises
``ExpressionError`` with the position of the character or token that goes too far.
``AND``/``OR`` chains are flat nodes, so their length adds no depth; evaluating a parsed
expression therefore never recurses deeper than the nesting.

``check(source, schema)`` parses against a JSON Schema's properties and then types the
expression: every path must exist in the schema, the two sides of a comparison must be
able to hold the same kind of value (numbers, strings, booleans; ``null`` goes with
anything), only numbers and strings are ordered, and whatever stands where a condition
is expected must be a boolean. A mistake raises ``ExpressionError`` at the offending token.
A string field whose schema says ``"format": "decimal"`` (money, sent as text so that no
digit is lost) is a number: the node ``check`` returns compares it as a ``Decimal``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

FIELDS = frozenset({"id", "code", "name", "email", "currency", "address", "custom_fields"})
ALIASES = {"customFields": "custom_fields", "customfields": "custom_fields"}

#: Longest expression accepted, in characters (the config option allows the same).
MAX_LENGTH = 2000
#: Deepest nesting accepted: open parentheses plus enclosing ``NOT``s at any point.
MAX_DEPTH = 32


class ExpressionError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # name, string, number, op, lparen, rparen, dot, end
    text: str
    position: int
    value: Any = None


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|=|<|>)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<dot>\.)
      | (?P<quote>["'])""",
    re.VERBOSE,
)


def tokenize(source: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise ExpressionError(f"unexpected character {source[position]!r}", position)
        kind = match.lastgroup or ""
        if kind == "quote":
            token, position = _string(source, position)
            tokens.append(token)
            continue
        if kind == "number":
            tokens.append(Token("number", match.group(), position, Decimal(match.group())))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


def _string(source: str, start: int) -> tuple[Token, int]:
    quote, position, chars = source[start], start + 1, []
    while position < len(source):
        char = source[position]
        if char == "\\" and position + 1 < len(source):
            chars.append(source[position + 1])
            position += 2
            continue
        if char == quote:
            text = source[start : position + 1]
            return Token("string", text, start, "".join(chars)), position + 1
        chars.append(char)
        position += 1
    raise ExpressionError("unterminated string", start)


# The parsed tree: tuples, so that a compiled filter is plain immutable data.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str, fields: frozenset[str], aliases: Mapping[str, str]) -> None:
        self.fields, self.aliases = fields, aliases
        if len(source) > MAX_LENGTH:
            raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0

    def enter(self, token: Token) -> None:
        """One more level of nesting, opened by ``token`` (a parenthesis or a NOT)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nested deeper than {MAX_DEPTH} levels", token.position
            )

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.current
        if token.kind == "name" and token.text.upper() == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise ExpressionError("empty expression", 0)
        node = self.or_expr()
        if self.current.kind != "end":
            raise ExpressionError(f"unexpected {self.current.text!r}", self.current.position)
        return node

    def or_expr(self) -> Node:
        nodes = [self.and_expr()]
        while self.keyword("OR"):
            nodes.append(self.and_expr())
        return nodes[0] if len(nodes) == 1 else ("or", *nodes)

    def and_expr(self) -> Node:
        nodes = [self.not_expr()]
        while self.keyword("AND"):
            nodes.append(self.not_expr())
        return nodes[0] if len(nodes) == 1 else ("and", *nodes)

    def not_expr(self) -> Node:
        depth = self.depth
        positions = []
        while True:
            token = self.current
            if not self.keyword("NOT"):
                break
            self.enter(token)
            positions.append(token.position)
        node = self.comparison()
        self.depth = depth
        for position in reversed(positions):
            node = ("not", node, position)
        return node

    def comparison(self) -> Node:
        left = self.operand()
        if self.current.kind == "op":
            token = self.advance()
            operator = "=" if token.text == "==" else token.text
            return ("cmp", operator, left, self.operand(), token.position)
        return left

    def operand(self) -> Node:
        token = self.current
        if token.kind == "lparen":
            self.enter(self.advance())
            node = self.or_expr()
            if self.current.kind != "rparen":
                raise ExpressionError("expected ')'", self.current.position)
            self.advance()
            self.depth -= 1
            return node
        if token.kind in ("string", "number"):
            self.advance()
            return ("value", token.value, token.position)
        if token.kind == "name":
            return self.path_or_literal()
        what = "end of expression" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a field or a value, found {what}", token.position)

    def path_or_literal(self) -> Node:
        token = self.advance()
        literal = {"TRUE": True, "FALSE": False, "NULL": None}
        if token.text.upper() in literal:
            return ("value", literal[token.text.upper()], token.position)
        if token.text.upper() in ("AND", "OR", "NOT"):
            raise ExpressionError(
                f"expected a field or a value, found {token.text!r}", token.position
            )
        root = self.aliases.get(token.text, token.text)
        if root not in self.fields:
            raise ExpressionError(
                f"unknown field {token.text!r} (fields: {', '.join(sorted(self.fields))}; "
                "quote text values)",
                token.position,
            )
        path, positions = [root], [token.position]
        while self.current.kind == "dot":
            self.advance()
            if self.current.kind != "name":
                raise ExpressionError("expected a name after '.'", self.current.position)
            positions.append(self.current.position)
            path.append(self.advance().text)
        return ("path", tuple(path), tuple(positions))


def parse(
    source: str, fields: frozenset[str] = FIELDS, aliases: Mapping[str, str] = ALIASES
) -> Node:
    """Parse an expression whose paths start at one of ``fields`` (the account filter's by
    default), raising ``ExpressionError`` with the position of a mistake (including one
    past ``MAX_LENGTH`` or ``MAX_DEPTH``); never any other exception."""
    return _Parser(source, fields, aliases).parse()


def evaluate(node: Node, account: Mapping[str, Any]) -> bool:
    return _truthy(_value(node, account))


def _value(node: Node, account: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "path":
        return _lookup(account, node[1])
    if kind == "decimal":
        return _decimal(_lookup(account, node[1]))
    if kind == "not":
        return not _truthy(_value(node[1], account))
    if kind == "and":
        return all(_truthy(_value(child, account)) for child in node[1:])
    if kind == "or":
        return any(_truthy(_value(child, account)) for child in node[1:])
    return _compare(node[1], _value(node[2], account), _value(node[3], account))


def _lookup(account: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = account
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> Any:
    """Numbers as Decimal; a numeric string too, when compared with a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return Decimal(value)
    return value


_DECIMAL_TEXT = r"-?\d+(\.\d+)?([eE][-+]?\d+)?"


def _decimal(value: Any) -> Any:
    """A field ``check`` typed as a decimal: its text (or a JSON number) as a Decimal;
    anything else as it is, so that a missing field stays null."""
    if isinstance(value, str) and re.fullmatch(_DECIMAL_TEXT, value):
        return Decimal(value)
    return _number(value) if isinstance(value, int | float) else value


def _compare(operator: str, left: Any, right: Any) -> bool:
    if isinstance(left, int | float | Decimal) or isinstance(right, int | float | Decimal):
        left, right = _number(left), _number(right)
    if operator in ("=", "!="):
        equal = left == right and (type(left) is type(right) or left is None)
        return equal if operator == "=" else not equal
    if left is None or right is None or type(left) is not type(right) or isinstance(left, bool):
        return False
    if not isinstance(left, Decimal | str):
        return False
    if isinstance(left, Decimal) and (left.is_nan() or right.is_nan()):
        return False  # ordering NaN would raise InvalidOperation
    ordered: dict[str, bool] = {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }
    return ordered[operator]


def _truthy(value: Any) -> bool:
    return bool(value) if not isinstance(value, Decimal) else value != 0


# --- check: an expression typed against a JSON Schema ----------------------------------------

#: The kinds of value a schema allows; "decimal" is text holding a number (money).
Kinds = frozenset[str]
ANY: Kinds = frozenset({"any"})
BOOLEAN: Kinds = frozenset({"boolean"})
_ORDERED = frozenset({"number", "string"})
_NAMES = {
    "number": "a number",
    "string": "text",
    "boolean": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "a list",
}


def root_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    """The names an expression over documents of this JSON Schema may start a path with."""
    return frozenset(_properties(schema, schema) or {})


def check(node_or_source: Node | str, schema: Mapping[str, Any]) -> Node:
    """Parse (when given text) and type an expression over documents of a JSON Schema
    (an object schema; ``$ref`` to its ``$defs`` are followed). Returns the node to
    evaluate, with decimal-text fields marked to compare as numbers. Raises
    ``ExpressionError`` at the first path the schema lacks, the first comparison whose
    sides cannot hold the same kind of value, or the first non-boolean where a condition
    stands."""
    if isinstance(node_or_source, str):
        node = parse(node_or_source, root_fields(schema), {})
    else:
        node = node_or_source
    return _Checker(schema).condition(node)


def _start(node: Node) -> int:
    """Where a node's text begins (its first token, or the first token inside it)."""
    while node[0] in ("and", "or", "cmp"):
        node = node[1] if node[0] != "cmp" else node[2]
    return int(node[2][0] if node[0] in ("path", "decimal") else node[2])


class _Checker:
    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.root = schema

    def condition(self, node: Node) -> Node:
        typed, kinds = self.typed(node)
        if not kinds & {"boolean", "any"}:
            raise ExpressionError(
                f"{_describe(node)} is {_kinds_text(kinds)}, not a condition: compare it "
                "with a value",
                _start(node),
            )
        return typed

    def typed(self, node: Node) -> tuple[Node, Kinds]:
        kind = node[0]
        if kind == "value":
            return node, _value_kinds(node[1])
        if kind in ("path", "decimal"):
            kinds = self.path_kinds(node)
            marked = "decimal" if "decimal" in kinds else "path"
            return (marked, *node[1:]), kinds
        if kind == "not":
            return ("not", self.condition(node[1]), *node[2:]), BOOLEAN
        if kind in ("and", "or"):
            return (kind, *(self.condition(child) for child in node[1:])), BOOLEAN
        operator = node[1]
        (left, left_kinds), (right, right_kinds) = self.typed(node[2]), self.typed(node[3])
        self.comparable(operator, (node[2], left_kinds), (node[3], right_kinds))
        return ("cmp", operator, left, right, *node[4:]), BOOLEAN

    def comparable(
        self, operator: str, left: tuple[Node, Kinds], right: tuple[Node, Kinds]
    ) -> None:
        sides = [(side, _plain(kinds)) for side, kinds in (left, right)]
        if operator in ("=", "!=") and any(kinds == {"null"} for _, kinds in sides):
            return  # a comparison with null suits any field, an object's or a list's too
        for side, kinds in sides:
            if kinds & {"object", "array"}:
                raise ExpressionError(
                    f"{_describe(side)} is {_kinds_text(kinds)}: compare one of its fields",
                    _start(side),
                )
            if operator not in ("=", "!=") and (
                kinds - _ORDERED - {"null", "any"} or not kinds - {"null"}
            ):
                raise ExpressionError(
                    f"{_describe(side)} is {_kinds_text(kinds)}: only numbers and text "
                    f"can be compared with {operator!r}",
                    _start(side),
                )
        (_, left_kinds), (right_node, right_kinds) = sides
        if "any" in left_kinds | right_kinds:
            return
        left_kinds, right_kinds = left_kinds - {"null"}, right_kinds - {"null"}
        if not left_kinds & right_kinds:
            raise ExpressionError(
                f"{_describe(left[0])} is {_kinds_text(left_kinds)} but "
                f"{_describe(right_node)} is {_kinds_text(right_kinds)}: they cannot be "
                "compared",
                _start(right_node),
            )

    def path_kinds(self, node: Node) -> Kinds:
        names, positions = node[1], node[2]
        schema: Mapping[str, Any] = self.root
        for depth, (name, position) in enumerate(zip(names, positions, strict=True)):
            child = _child(self.root, schema, name)
            if child is None:
                path = ".".join(names[: depth + 1])
                raise ExpressionError(f"unknown field {path!r}", position)
            schema = child
        return _schema_kinds(self.root, schema)


def _describe(node: Node) -> str:
    if node[0] in ("path", "decimal"):
        return repr(".".join(node[1]))
    if node[0] != "value":
        return "the condition"
    value = node[1]
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def _kinds_text(kinds: Kinds) -> str:
    names = [_NAMES.get(kind, kind) for kind in sorted(_plain(kinds))]
    return " or ".join(names) if names else "nothing"


def _plain(kinds: Kinds) -> Kinds:
    """Decimal text is a number to the language."""
    return kinds - {"decimal"} | {"number"} if "decimal" in kinds else kinds


def _value_kinds(value: Any) -> Kinds:
    if value is None:
        return frozenset({"null"})
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | float | Decimal):
        return frozenset({"number"})
    if isinstance(value, str):
        return frozenset({"string"})
    if isinstance(value, list):
        return frozenset({"array"})
    if isinstance(value, Mapping):
        return frozenset({"object"})
    return ANY


def _resolve(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < MAX_DEPTH:
        reference: str = schema["$ref"]
        target: Any = root
        for part in reference.removeprefix("#/").split("/") if reference != "#" else []:
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        schema, seen = target, seen + 1
    return schema


def _branches(root: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    schema = _resolve(root, schema)
    union = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(union, list):
        return [_resolve(root, branch) for branch in union if isinstance(branch, Mapping)]
    return [schema]


def _schema_kinds(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Kinds:
    kinds: set[str] = set()
    for branch in _branches(root, schema):
        if "const" in branch or "enum" in branch:
            values = [branch["const"]] if "const" in branch else list(branch["enum"])
            kinds.update(kind for value in values for kind in _value_kinds(value))
            continue
        declared = branch.get("type")
        if declared is None:
            return ANY
        for name in declared if isinstance(declared, list) else [declared]:
            if name == "string" and branch.get("format") == "decimal":
                kinds.add("decimal")
            else:
                kinds.add("number" if name == "integer" else str(name))
    return frozenset(kinds) or ANY


def _properties(root: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for branch in _branches(root, schema):
        properties = branch.get("properties")
        if isinstance(properties, Mapping):
            found.update(properties)
    return found or None


def _child(
    root: Mapping[str, Any], schema: Mapping[str, Any], name: str
) -> Mapping[str, Any] | None:
    """The schema of field ``name`` inside a document of ``schema``; None: it has none."""
    properties = _properties(root, schema) or {}
    if isinstance(properties.get(name), Mapping):
        return dict(properties[name])
    kinds = _schema_kinds(root, schema)
    if "any" in kinds:
        return {}
    if "object" not in kinds:
        return None
    for branch in _branches(root, schema):
        extra = branch.get("additionalProperties", not branch.get("properties"))
        if extra is True:
            return {}
        if isinstance(extra, Mapping):
            return extra
    return None
