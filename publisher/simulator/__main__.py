"""``python -m publisher.simulator``: the simulator on its own (same as ``... simulate``)."""

from publisher.simulator.cli import main

raise SystemExit(main())
