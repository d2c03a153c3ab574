"""Safe expressions over the columns of a table: the ``--weights`` and ``--holdout`` rules.

A user's string is parsed with `ast`, every node is checked against a whitelist, and only then
is the tree evaluated here, over the table's columns (pandas Series) and numpy functions.
Nothing is handed to ``eval``, ``DataFrame.eval`` or ``DataFrame.query``: those resolve
``@``-names to the caller's variables and let attribute chains on a column reach ``os``.

Allowed: column names of the table, numbers (as floats, so ``9 ** 9 ** 9`` is inf, not a
hang), ``True``/``False``, ``+ - * / **`` and unary ``-``/``+``, comparisons (chained too),
``and or not`` and ``& | ~`` between conditions, parentheses, string literals as comparison
operands (``size == '3B'``), ``in``/``not in`` against a list of literals, and the functions
of `FUNCTIONS`. ``min(X)``/``max(X)`` of one argument is the column's minimum/maximum (NaN
skipped); with two or more they are taken row by row.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_LENGTH = 1000  # characters: a rule or a weight is one line, not a program
MAX_DEPTH = 60  # nesting of the syntax tree; keeps checking and evaluating off the stack limit


class ExprError(ValueError):
    """An expression that is not allowed (names the offending piece and what is allowed)."""


@dataclass(frozen=True)
class Function:
    """A function an expression may call."""

    name: str
    """The name used in expressions."""
    call: Callable[..., Any]
    """Applied to the evaluated arguments (Series or scalars)."""
    arity: tuple[int, int | None]
    """Least and most arguments (None: no upper bound)."""


def _extreme(series_op: str, elementwise: Callable[..., Any]) -> Callable[..., Any]:
    """min/max: of one column (NaN skipped), or row by row over several arguments."""

    def call(*args: Any) -> Any:
        if len(args) == 1:
            (x,) = args
            return getattr(x, series_op)() if isinstance(x, pd.Series) else x
        out = args[0]
        for x in args[1:]:
            out = elementwise(out, x)
        return out

    return call


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("log", np.log, (1, 1)),
        Function("log10", np.log10, (1, 1)),
        Function("log2", np.log2, (1, 1)),
        Function("log1p", np.log1p, (1, 1)),
        Function("exp", np.exp, (1, 1)),
        Function("expm1", np.expm1, (1, 1)),
        Function("sqrt", np.sqrt, (1, 1)),
        Function("abs", np.abs, (1, 1)),
        Function("min", _extreme("min", np.fmin), (1, None)),
        Function("max", _extreme("max", np.fmax), (1, None)),
    )
}

_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_LOGICAL: dict[type, Callable[[Any, Any], Any]] = {
    ast.And: np.logical_and,
    ast.Or: np.logical_or,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_MEMBERSHIP = (ast.In, ast.NotIn)


def allowed(columns: list[str] | tuple[str, ...] = ()) -> str:
    """One line saying what an expression may contain."""
    cols = f"column names ({', '.join(map(str, columns))})" if columns else "column names"
    return (
        f"allowed: {cols}, numbers, + - * / **, comparisons, and/or/not, & | ~, parentheses, "
        f"'strings' in comparisons, `in [...]`, functions {', '.join(FUNCTIONS)}"
    )


@dataclass(frozen=True)
class Expr:
    """A checked expression: evaluating it runs nothing but the whitelisted operations."""

    text: str
    """The expression as the user gave it."""
    source: str
    """The text the tree was parsed from (stripped; ``&``/``|`` spelled ``and``/``or``)."""
    tree: ast.Expression
    """Its syntax tree, every node of which passed the whitelist."""
    columns: tuple[str, ...]
    """The column names it was checked against."""

    def evaluate(self, table: pd.DataFrame) -> np.ndarray:
        """The value per row of ``table`` (scalars broadcast to its length)."""
        missing = sorted(set(_names(self.tree)) - set(map(str, table.columns)))
        if missing:
            raise ExprError(f"{self.text!r} names columns {missing} that the table lacks")
        try:
            with np.errstate(all="ignore"):
                value = _Evaluator(self.source, table).visit(self.tree.body)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
            if isinstance(err, ExprError):
                raise
            raise ExprError(
                f"{self.text!r} cannot be evaluated on the table ({type(err).__name__}: {err}); "
                "compare numbers with numbers and text with 'strings'"
            ) from None
        return np.broadcast_to(np.asarray(value), (len(table),)).copy()


def parse(text: str, columns: list[str] | tuple[str, ...]) -> Expr:
    """Parse ``text`` and check it against the whitelist for a table with ``columns``."""
    columns = tuple(map(str, columns))
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"empty expression {text!r}; {allowed(columns)}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression of {len(text)} characters; at most {MAX_LENGTH} are allowed")
    if "\n" in text or "\r" in text:
        raise ExprError(f"{text!r} spans several lines; give the expression on one line")
    source = _boolean_words(text.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        at = (err.offset or 1) - 1
        piece = source[at : at + 12]
        hint = " (`@` names are not allowed)" if piece.startswith("@") else ""
        raise ExprError(
            f"{text!r} is not a valid expression: {err.msg} at {piece!r}{hint}; {allowed(columns)}"
        ) from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise ExprError(f"{text!r} is not a valid expression ({type(err).__name__})") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExprError(f"{text[:40]!r}... nests deeper than {MAX_DEPTH} levels; write it flatter")
    _Checker(source, columns).visit(tree.body)
    return Expr(text=text, source=source, tree=tree, columns=columns)


def values_of(text: str, table: pd.DataFrame) -> np.ndarray:
    """The numeric value of ``text`` for each row of ``table`` (conditions give 0 or 1)."""
    out = parse(text, list(table.columns)).evaluate(table)
    if out.dtype.kind not in "biuf":
        raise ExprError(f"{text!r} does not give numbers (got {out.dtype} values)")
    return out.astype(float)


def mask_of(text: str, table: pd.DataFrame) -> np.ndarray:
    """Which rows of ``table`` satisfy the condition ``text`` (a boolean mask)."""
    out = parse(text, list(table.columns)).evaluate(table)
    if out.dtype.kind != "b":
        raise ExprError(
            f"{text!r} is not a condition (gives {out.dtype} values); compare a column, "
            "e.g. \"N > 1e9 and size != '3B'\""
        )
    return out


def _boolean_words(text: str) -> str:
    """``&``/``|`` as ``and``/``or``, so they bind looser than comparisons as in pandas:
    ``N > 1e9 & D < 1e12`` means ``(N > 1e9) and (D < 1e12)``, not ``N > (1e9 & D) < 1e12``."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text  # ast.parse names the syntax error
    words = {"&": " and ", "|": " or "}
    out, last = [], 0
    for tok in tokens:
        if tok.type == tokenize.OP and tok.string in words:
            out += [text[last : tok.start[1]], words[tok.string]]
            last = tok.end[1]
    return "".join(out) + text[last:]


def _depth(tree: ast.AST) -> int:
    """How deep the syntax tree nests (counted without recursion)."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _names(tree: ast.AST) -> list[str]:
    """Column names used in a checked tree (function names excluded)."""
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls]


class _Checker(ast.NodeVisitor):
    """Refuses every node outside the whitelist, naming the piece of text it came from."""

    def __init__(self, text: str, columns: tuple[str, ...]) -> None:
        self.text = text
        self.columns = columns

    def refuse(self, node: ast.AST, what: str) -> ExprError:
        """The error for ``node``: its source text, why it is refused and what is allowed."""
        piece = ast.get_source_segment(self.text, node) or type(node).__name__
        return ExprError(
            f"{piece!r} in {self.text!r}: {what} is not allowed; {allowed(self.columns)}"
        )

    def generic_visit(self, node: ast.AST) -> None:
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "subscripting",
            ast.Lambda: "a lambda",
            ast.NamedExpr: "assignment",
            ast.IfExp: "an if-expression",
        }
        raise self.refuse(node, kinds.get(type(node), f"{type(node).__name__} syntax"))

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            raise self.refuse(node, "a string outside a comparison")
        if not isinstance(node.value, (int, float)):
            raise self.refuse(node, f"a {type(node.value).__name__} literal")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FUNCTIONS and node.id not in self.columns:
            raise self.refuse(node, f"the function {node.id} without a call")
        if node.id not in self.columns:
            raise self.refuse(node, f"the name {node.id!r} (not a column)")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _ARITHMETIC:
            raise self.refuse(node, f"the operator {type(node.op).__name__}")
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        self.visit(node.operand)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_Compare(self, node: ast.Compare) -> None:
        self.operand(node.left)
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, _MEMBERSHIP):
                self.literal_list(right)
            elif type(op) in _COMPARE:
                self.operand(right)
            else:
                raise self.refuse(node, f"the comparison {type(op).__name__}")

    def operand(self, node: ast.AST) -> None:
        """A comparison operand: a string literal, or anything else allowed."""
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            self.visit(node)

    def literal_list(self, node: ast.AST) -> None:
        """The right side of ``in``: a list or tuple of number or string literals."""
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.refuse(node, "`in` with anything but a [list] of literals")
        for elt in node.elts:
            if not (isinstance(elt, ast.Constant) and isinstance(elt.value, (int, float, str))):
                raise self.refuse(elt, "a list element that is not a literal")

    def visit_List(self, node: ast.List) -> None:
        raise self.refuse(node, "a list outside `in [...]`")

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise self.refuse(node.func, "calling anything but the listed functions")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.refuse(node, "keyword or * arguments")
        least, most = FUNCTIONS[name].arity
        if len(node.args) < least or (most is not None and len(node.args) > most):
            raise self.refuse(node, f"{name} with {len(node.args)} arguments")
        for arg in node.args:
            self.visit(arg)


class _Evaluator(ast.NodeVisitor):
    """Evaluates a checked tree over the table's columns."""

    def __init__(self, text: str, table: pd.DataFrame) -> None:
        self.text = text
        self.table = table

    def condition(self, node: ast.AST) -> Any:
        """The value of ``node``, which must be a condition (boolean)."""
        value = self.visit(node)
        if np.asarray(value).dtype.kind != "b":
            piece = ast.get_source_segment(self.text, node)
            raise ExprError(
                f"{piece!r} in {self.text!r} is not a condition: and/or/not and & | ~ join "
                "comparisons such as N > 1e9"
            )
        return value

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (bool, str)):
            return node.value
        try:
            return np.float64(node.value)
        except OverflowError:
            return np.float64(np.inf)

    def visit_Name(self, node: ast.Name) -> pd.Series:
        return self.table[node.id]

    def number(self, node: ast.AST) -> Any:
        """The value of ``node``, which must be numeric (an arithmetic operand)."""
        value = self.visit(node)
        if isinstance(value, pd.Series) and value.dtype.kind not in "biuf":
            try:
                return pd.to_numeric(value)
            except (TypeError, ValueError):
                pass
        elif np.asarray(value).dtype.kind in "biuf":
            return value
        piece = ast.get_source_segment(self.text, node)
        raise ExprError(
            f"{piece!r} in {self.text!r} is not numeric: arithmetic and functions take numeric "
            "columns and numbers"
        )

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return _ARITHMETIC[type(node.op)](self.number(node.left), self.number(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        if isinstance(node.op, (ast.Not, ast.Invert)):
            return np.logical_not(self.condition(node.operand))
        value = self.number(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        out = self.condition(node.values[0])
        for value in node.values[1:]:
            out = _LOGICAL[type(node.op)](out, self.condition(value))
        return out

    def visit_Compare(self, node: ast.Compare) -> Any:
        out, left = True, self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, _MEMBERSHIP):
                items = [e.value for e in right_node.elts]  # type: ignore[attr-defined]
                hit = pd.Series(left).isin(items).to_numpy() if _is_array(left) else left in items
                step = np.logical_not(hit) if isinstance(op, ast.NotIn) else hit
            else:
                right = self.visit(right_node)
                step = _COMPARE[type(op)](left, right)
                left = right
            out = np.logical_and(out, step)
        return out

    def visit_Call(self, node: ast.Call) -> Any:
        function = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return function.call(*(self.number(a) for a in node.args))


def _is_array(value: Any) -> bool:
    return isinstance(value, (pd.Series, np.ndarray))
