"""``python -m publisher`` is the ``dataconnect-publisher`` command."""

from publisher.cli import main

raise SystemExit(main())
