"""The module proxy ``LazyLoader.lazy(name)`` returns: the real package is imported on first attribute access."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_memtrack.tracking.loader import LazyLoader


class LazyModule(ModuleType):
    """A stand-in module that imports the real one on first attribute access."""

    def __init__(self, name: str, loader: LazyLoader) -> None:
        super().__init__(name)
        object.__setattr__(self, "_memtrack_loader", loader)

    def _memtrack_target(self) -> ModuleType:
        loader: LazyLoader = object.__getattribute__(self, "_memtrack_loader")
        name = object.__getattribute__(self, "__name__")
        return loader.load(name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._memtrack_target(), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        setattr(self._memtrack_target(), attribute, value)

    def __dir__(self) -> list[str]:
        return dir(self._memtrack_target())

    def __repr__(self) -> str:
        loader: LazyLoader = object.__getattribute__(self, "_memtrack_loader")
        name = object.__getattribute__(self, "__name__")
        info = loader.get_package_info(name)
        return f"<lazy module {name!r} ({info.status if info else 'unknown'})>"
