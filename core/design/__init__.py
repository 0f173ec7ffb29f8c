"""The quota designer (测算): quotas fitted to the money raised, the year simulated, last
year's claims replayed. `core/design/fit.py` solves the scale, `simulate.py` draws years and
checks them against the rule, `weights.py` reads or estimates relative weights,
`pool.py` reads a pool's members and claims, `backtest.py` replays claims, `outputs.py`
writes quotas.csv, design.xlsx and design.png."""
from core.design.errors import DesignError, RuleDrift
from core.design.fit import Design, design
from core.design.simulate import Simulation, simulate

__all__ = ["Design", "DesignError", "RuleDrift", "Simulation", "design", "simulate"]
