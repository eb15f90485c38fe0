"""``python -m publisher`` is the ``dataconnect-publisher`` command."""

from publisher.cli import main

if __name__ == "__main__":  # not when a spawned decode process imports it
    raise SystemExit(main())
