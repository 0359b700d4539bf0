"""The account filter language: a small boolean expression over an account, parsed when
a config is saved (errors carry the position) and evaluated without ``eval``.

    expr        := or_expr
    or_expr     := and_expr ("OR" and_expr)*
    and_expr    := not_expr ("AND" not_expr)*
    not_expr    := "NOT" not_expr | comparison
    comparison  := operand (("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
    operand     := path | STRING | NUMBER | "true" | "false" | "null" | "(" expr ")"
    path        := FIELD ("." NAME)*      FIELD is one of the account's fields

Keywords are case-insensitive. Strings are in single or double quotes (backslash escapes
the quote). ``customFields`` is accepted for ``custom_fields``. A missing field is null; a
comparison between values of different types is false, except ``=``/``!=`` with null.

Bounds, checked while parsing so that no input can exhaust the stack: at most
``MAX_LENGTH`` characters, and at most ``MAX_DEPTH`` levels of nesting, counting each
open parenthesis and each ``NOT`` that encloses an operand. Past either, ``parse`` raises
``ExpressionError`` with the position of the character or token that goes too far.
``AND``/``OR`` chains are flat nodes, so their length adds no depth; evaluating a parsed
expression therefore never recurses deeper than the nesting.
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
    def __init__(self, source: str) -> None:
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
        nots, depth = 0, self.depth
        while True:
            token = self.current
            if not self.keyword("NOT"):
                break
            self.enter(token)
            nots += 1
        node = self.comparison()
        self.depth = depth
        for _ in range(nots):
            node = ("not", node)
        return node

    def comparison(self) -> Node:
        left = self.operand()
        if self.current.kind == "op":
            operator = self.advance().text
            return ("cmp", "=" if operator == "==" else operator, left, self.operand())
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
            return ("value", token.value)
        if token.kind == "name":
            return self.path_or_literal()
        what = "end of expression" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a field or a value, found {what}", token.position)

    def path_or_literal(self) -> Node:
        token = self.advance()
        literal = {"TRUE": True, "FALSE": False, "NULL": None}
        if token.text.upper() in literal:
            return ("value", literal[token.text.upper()])
        if token.text.upper() in ("AND", "OR", "NOT"):
            raise ExpressionError(
                f"expected a field or a value, found {token.text!r}", token.position
            )
        root = ALIASES.get(token.text, token.text)
        if root not in FIELDS:
            raise ExpressionError(
                f"unknown field {token.text!r} (fields: {', '.join(sorted(FIELDS))}; "
                "quote text values)",
                token.position,
            )
        path = [root]
        while self.current.kind == "dot":
            self.advance()
            if self.current.kind != "name":
                raise ExpressionError("expected a name after '.'", self.current.position)
            path.append(self.advance().text)
        return ("path", tuple(path))


def parse(source: str) -> Node:
    """Parse an expression, raising ``ExpressionError`` with the position of a mistake
    (including one past ``MAX_LENGTH`` or ``MAX_DEPTH``); never any other exception."""
    return _Parser(source).parse()


def evaluate(node: Node, account: Mapping[str, Any]) -> bool:
    return _truthy(_value(node, account))


def _value(node: Node, account: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "path":
        return _lookup(account, node[1])
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
