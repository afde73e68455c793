"""Errors raised by mpsearch.

Every error a user can trigger is a subclass of :class:`MpsearchError`, and its message
states the rule that was broken and then the value that broke it, e.g.
``"recipe.yaml: budgets.size_bytes must be > 0, but got -3"``.
"""

from __future__ import annotations

from typing import Any, Iterable


class MpsearchError(Exception):
    """Root of every error mpsearch raises on purpose.

    Attributes:
        rule_parts: ``(key, rule, value)`` of an error built by :func:`rule_error`, else None.
    """

    rule_parts: tuple[str, str, Any] | None = None


class ConfigError(MpsearchError, ValueError):
    """A config, recipe, profile, plan or argument breaks a rule."""


class UnknownNameError(MpsearchError, KeyError):
    """A name was looked up in a registry (or a model) and is not there."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it plainly
        return str(self.args[0]) if self.args else ""


class InfeasibleBudgetError(MpsearchError, ValueError):
    """No assignment of candidates meets the budgets.

    Attributes:
        smallest: budget name -> the smallest value that budget could take while the
            other budgets hold (None where no value helps because the others already fail).
    """

    def __init__(self, message: str, smallest: dict[str, float | None] | None = None):
        super().__init__(message)
        self.smallest = dict(smallest or {})


class UnsupportedModelError(MpsearchError, TypeError):
    """The model, or an op inside it, cannot be handled by the requested step."""


def rule_error(where: str, key: str, rule: str, value: Any, cls: type[MpsearchError] = ConfigError) -> MpsearchError:
    """Build the standard message ``"{where}: {key} must be {rule}, but got {value!r}"``.

    The error keeps ``(key, rule, value)`` as ``rule_parts``, so a caller that knows more
    context (the file, the section) can name it: :func:`in_context`.
    """
    prefix = f"{where}: " if where else ""
    err = cls(f"{prefix}{key} must be {rule}, but got {value!r}")
    err.rule_parts = (key, rule, value)
    return err


def in_context(exc: MpsearchError, where: str, section: str = "") -> MpsearchError:
    """``exc`` again, naming ``where`` (a file) and the dotted key under ``section``.

    A type's own check says ``"DataSpec: batch_size must be an integer >= 1, but got -1"``; the
    loader of a file re-raises it as ``"r.yaml: data.batch_size must be ..."``. An error
    without ``rule_parts`` keeps its message after ``"{where}: {section}: "``.
    """
    parts = getattr(exc, "rule_parts", None)
    if parts is None:
        prefix = ": ".join(p for p in (where, section) if p)
        out = type(exc)(f"{prefix}: {exc}" if prefix else str(exc))
    else:
        key, rule, value = parts
        out = rule_error(where, f"{section}.{key}" if section else key, rule, value, type(exc))
    if isinstance(exc, InfeasibleBudgetError) and isinstance(out, InfeasibleBudgetError):
        out.smallest = dict(exc.smallest)
    return out


def unknown_name(kind: str, name: Any, valid: Iterable[Any], where: str = "") -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the valid names and the closest match."""
    import difflib

    valid = sorted(str(v) for v in valid)
    prefix = f"{where}: " if where else ""
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(valid[:30]) + (", ..." if len(valid) > 30 else "")
    return UnknownNameError(f"{prefix}unknown {kind} {name!r}{hint} Valid: {shown}")
