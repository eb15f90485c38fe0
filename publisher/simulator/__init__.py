"""A deterministic simulator of iQmetrix DataConnect Deltas: test double, demo and benchmark source.

::

    from publisher.simulator import Simulator, SimulatorServer, SimulatorSettings

    sim = Simulator(SimulatorSettings(seed=7, default_rows=5000), clock)
    client = httpx.Client(transport=sim.transport(), base_url="http://dataconnect")  # in-process
    with SimulatorServer(sim) as server:  # or over real sockets
        httpx.get(server.url + "/_simulator/health")

See docs/SIMULATOR.md for options, admin endpoints and which behaviours are confirmed.
"""

from publisher.simulator.app import SESSION_COOKIE, TOKEN_PATH, Simulator
from publisher.simulator.cli import main, parse_args
from publisher.simulator.clock import Clock, ManualClock, system_clock
from publisher.simulator.faults import FaultRule, FaultSettings
from publisher.simulator.responses import SimResponse
from publisher.simulator.server import SimulatorServer
from publisher.simulator.settings import BAD_ROW_KINDS, SimulatorSettings, TreeShape

__all__ = [
    "BAD_ROW_KINDS",
    "SESSION_COOKIE",
    "TOKEN_PATH",
    "Clock",
    "FaultRule",
    "FaultSettings",
    "ManualClock",
    "SimResponse",
    "Simulator",
    "SimulatorServer",
    "SimulatorSettings",
    "TreeShape",
    "main",
    "parse_args",
    "system_clock",
]
