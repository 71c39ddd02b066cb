"""A local SendGrid for development and tests: Mail Send in, signed Event Webhook batches out.

``resistry simulator`` serves it on loopback; tests and demos call :func:`start_simulator`.
Recipients behave according to hidden true rates per variant (``true_rates.toml``).
"""

from engine.simulator.handle import SimulatorHandle, start_simulator

__all__ = ["SimulatorHandle", "start_simulator"]
