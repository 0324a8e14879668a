"""The pure scheduling core: no I/O, no wall clock, no global state.

Drivers (the digital twin, the control plane) feed it events and the current time;
it answers with decisions. See :mod:`gigafactory.core.scheduler`.
"""
