"""One name -> constructor table for every model, so configs and the CLI pick models by name.

Each entry has a kind: "bs" (bone suppression, image -> image) or "cls" (classifier, image ->
logits), so training code can refuse a classifier where a bone-suppression model is expected.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from cxrbs.core.errors import CxrbsError

KINDS = ("bs", "cls")

C = TypeVar("C", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class _Entry:
    constructor: Callable[..., nn.Module]
    kind: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *, kind: str | None = None) -> Callable[[C], C]:
    """Decorator adding a model class or factory under ``name``.

    ``kind`` defaults to the constructor's ``kind`` attribute (set on the base classes), so model
    classes need not repeat it; plain factory functions must pass it.
    """

    def decorate(constructor: C) -> C:
        k = kind if kind is not None else getattr(constructor, "kind", None)
        if k not in KINDS:
            raise ValueError(f"model {name!r}: kind must be one of {KINDS}, got {k!r}")
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old.constructor) != _qualname(constructor):
            raise ValueError(f"model name {name!r} is already registered by {old.constructor}")
        _REGISTRY[name] = _Entry(constructor, k)
        return constructor

    return decorate


def _qualname(obj: Callable[..., Any]) -> str:
    # A module reload re-registers the same object under a new identity: allow that, not clashes.
    return f"{obj.__module__}.{obj.__qualname__}"


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names (sorted), optionally only those of one kind ("bs" or "cls")."""
    if kind is not None and kind not in KINDS:
        raise CxrbsError(f"unknown model kind {kind!r}: use one of {', '.join(KINDS)}")
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def model_kind(name: str) -> str:
    """"bs" or "cls" for a registered model name."""
    return _lookup(name).kind


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise CxrbsError(f"unknown model {name!r}: choose one of {known}") from None


def _keyword_params(constructor: Callable[..., nn.Module]) -> dict[str, inspect.Parameter]:
    """The arguments a constructor takes by name (its signature: the one source of both checks)."""
    return {
        p.name: p for p in inspect.signature(constructor).parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def _check_kwargs(name: str, constructor: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """Refuse names the constructor does not take, before building (the config check,
    :func:`model_kwarg_problems`, also checks types and values)."""
    params = inspect.signature(constructor).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    allowed = list(_keyword_params(constructor))
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise CxrbsError(
            f"unknown argument(s) {', '.join(unknown)} for model {name!r}: "
            f"it accepts {', '.join(allowed) or 'no arguments'}"
        )


def create_model(name: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``seed`` makes the weight initialisation reproducible.

    The seed is applied inside a forked torch RNG so building a model never moves the caller's
    global random stream. The model remembers ``(name, kwargs)`` in ``model.cxrbs_spec`` so a
    checkpoint can be rebuilt from it.
    """
    entry = _lookup(name)
    _check_kwargs(name, entry.constructor, kwargs)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = entry.constructor(**kwargs)
        except TypeError as exc:  # e.g. a string where a number was expected
            raise CxrbsError(f"bad arguments {kwargs} for model {name!r}: {exc}") from exc
    setattr(model, "cxrbs_spec", {"name": name, "kwargs": dict(kwargs)})  # plain attribute
    return model


# ----------------------------------------------------------------- checking configured arguments
def model_kwarg_problems(model: str, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """(argument, what is wrong) for keyword arguments the model's constructor would refuse.

    Names and types come from the constructor's signature (defaults and annotations); values
    are then tried by building the model on torch's "meta" device, which allocates no weights,
    so even VGG-16 is checked in milliseconds.
    """
    constructor = _lookup(model).constructor  # importing this module registered every family
    params = _keyword_params(constructor)
    if not isinstance(kwargs, dict):
        return [("", f"must be a mapping of argument names to values, got {kwargs!r}")]
    problems: list[tuple[str, str]] = []
    for key, value in kwargs.items():
        if key not in params:
            problems.append((key, f"{model} has no argument {key!r}; it accepts "
                                  f"{', '.join(params) or 'no arguments'}"))
            continue
        wanted = _expected_type(params[key])
        if wanted is not None and not _matches(value, wanted):
            problems.append((key, f"must be {wanted[1]} for {model}"))
    if problems:
        return problems
    try:
        with torch.device("meta"):
            constructor(**kwargs)
    except CxrbsError as exc:
        return [("", " ".join(str(exc).split()))]
    except (TypeError, ValueError, RuntimeError, IndexError, ZeroDivisionError) as exc:
        return [("", f"{model} cannot be built with {kwargs}: {' '.join(str(exc).split())}")]
    return []


def _expected_type(param: inspect.Parameter) -> tuple[str, str] | None:
    """(kind, words) from the default's type, or from a plain annotation; None = not checked."""
    ann = str(param.annotation)
    default = param.default
    optional = "None" in ann or default is None
    kind = None
    if isinstance(default, bool) or ann == "bool":
        kind = "bool"
    elif isinstance(default, int) or ann.startswith("int"):
        kind = "int"
    elif isinstance(default, float) or ann.startswith("float"):
        kind = "float"
    elif isinstance(default, str) or ann == "str":
        kind = "str"
    elif isinstance(default, (tuple, list)) or "Sequence[int]" in ann:
        kind = "ints"
    words = {"bool": "true or false", "int": "an integer", "float": "a number",
             "str": "a word", "ints": "a comma-separated list of integers (e.g. 16,32,64)"}
    if kind is None:
        return None
    return (kind + ("?" if optional else ""), words[kind] + (" or none" if optional else ""))


def _matches(value: Any, wanted: tuple[str, str]) -> bool:
    kind = wanted[0].rstrip("?")
    if value is None:
        return wanted[0].endswith("?")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
