"""Probes: one module per probe type, each turning a target's settings into a result.

`probes.base` holds the interface every probe offers (`Probe`, `ProbeResult`, `Reason`);
`probes.registry` maps a type name to its options class and constructor. A sick target is
data, never an exception: `Probe.run()` only raises for bugs in this package.
"""
