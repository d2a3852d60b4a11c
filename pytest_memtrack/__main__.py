"""``python -m pytest_memtrack`` runs the command-line tool."""

from pytest_memtrack.cli import main

raise SystemExit(main())
