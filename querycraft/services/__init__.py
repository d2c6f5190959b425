"""The stages QueryCraft runs, one module each, found by discovery.

A service is a module of this package (any folder on the package's ``__path__`` counts, so a
service can live outside the source tree) that defines:

- ``run(cfg: DictConfig) -> Any``: its entry function, called with the whole config;
- optionally ``SETTINGS``: the dataclass of its settings, the typed schema of ``cfg.<key>``,
  where the key is ``SETTINGS_KEY`` if the module sets it, else the module's name;
- optionally ``check(cfg: DictConfig) -> list[str]``: what is wrong with the config for it,
  one message per problem; :func:`querycraft.config.check_config` gathers every service's.

``conf/service/<name>.yaml`` (``name: <name>``) makes it a choice of ``service=<name>``. A new
stage is therefore one module and one YAML file; no registry or dispatch code changes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from querycraft.errors import QueryCraftError

__all__ = ["Service", "forget_services", "get_service", "services"]


@dataclasses.dataclass(frozen=True)
class Service:
    """One stage, as its module describes it.

    Attributes:
        name: ``service.name`` and the module's name.
        entry: The module's ``run(cfg)``.
        settings: The dataclass of its settings, or None when it has none.
        settings_key: Where they sit in the config (``train`` for ``finetune``); None
            without settings.
        check: Its ``check(cfg)``, or None.
    """

    name: str
    entry: Callable[[DictConfig], Any]
    settings: type | None = None
    settings_key: str | None = None
    check: Callable[[DictConfig], list[str]] | None = None


def _describe(name: str, module: ModuleType) -> Service:
    entry = getattr(module, "run", None)
    if not callable(entry):
        raise TypeError(f"{module.__name__} must define its entry function run(cfg)")
    settings = getattr(module, "SETTINGS", None)
    if settings is not None and not (isinstance(settings, type)
                                     and dataclasses.is_dataclass(settings)):
        raise TypeError(f"{module.__name__}.SETTINGS must be a dataclass")
    check = getattr(module, "check", None)
    if check is not None and not callable(check):
        raise TypeError(f"{module.__name__}.check must be a function check(cfg) -> list[str]")
    key = getattr(module, "SETTINGS_KEY", name) if settings is not None else None
    return Service(name=name, entry=entry, settings=settings, settings_key=key, check=check)


@functools.cache
def services() -> dict[str, Service]:
    """Every service, by name: each public module on this package's ``__path__``, sorted."""
    found: dict[str, Service] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        found[info.name] = _describe(info.name,
                                     importlib.import_module(f"{__name__}.{info.name}"))
    keys = [s.settings_key for s in found.values() if s.settings_key is not None]
    clashes = sorted({k for k in keys if keys.count(k) > 1})
    if clashes:
        raise TypeError(f"two services claim the settings key(s) {', '.join(clashes)}")
    return found


def get_service(name: str) -> Service:
    """The service ``service.name`` names; a QueryCraftError listing the known ones otherwise."""
    try:
        return services()[name]
    except KeyError:
        raise QueryCraftError(f"service.name '{name}' is not one of "
                              f"{', '.join(services())}") from None


def forget_services() -> None:
    """Discover the services again on next use (after a module was added or a folder joined
    ``__path__`` while running)."""
    importlib.invalidate_caches()  # the import system caches folder listings too
    services.cache_clear()
