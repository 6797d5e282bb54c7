"""Arithmetic without eval: the expression's syntax tree is walked over a whitelist."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from memory_agent.tools.base import ToolContext, ToolResult

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max,
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2,
    "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "floor": math.floor, "ceil": math.ceil, "factorial": math.factorial,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 10_000  # keeps 9**9**9 from eating the process


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression; ValueError says what is not allowed."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from exc
    return _eval(tree.body)  # type: ignore[no-any-return]


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed (numbers, + - * / // % **, "
                     f"and {', '.join(sorted(_FUNCTIONS))})")  # fmt: skip


class CalculatorTool:
    name = "calculator"
    description = "Evaluates an arithmetic expression exactly (no variables)."
    parameters = {"expression": "the expression, e.g. (3 + 4) * sqrt(2)"}

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        expression = args.get("expression")
        if not isinstance(expression, str):
            return ToolResult(False, 'calculator needs {"expression": "..."}')
        try:
            value = evaluate(expression)
        except (ValueError, ArithmeticError, TypeError) as exc:
            return ToolResult(False, f"calculator error: {exc}")
        return ToolResult(True, repr(value), {"value": value})
