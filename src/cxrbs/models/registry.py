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


def _check_kwargs(name: str, constructor: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(constructor).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    allowed = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
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
