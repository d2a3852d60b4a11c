"""inventory_app: a small stock-keeping service, the example project of pytest-memtrack.

``app`` lazily loads the packages the service needs through pytest-memtrack's lazy loader, ``service`` handles
requests (one code path leaks on purpose), ``monitoring`` prints the loader's memory figures.
"""

__version__ = "1.0.0"
