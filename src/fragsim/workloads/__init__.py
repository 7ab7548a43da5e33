"""Workloads: sources of requests on the simulated clock (fragsim/scenario/engine.py). Each is a
plugin in one file of this package, registered with one line next to its class::

    @register_workload("fragmenter")
    class Fragmenter(Workload): ...

A workload drives the machine's memory users (fragsim/drivers) through their batch APIs, so
the allocator keeps its compiled speed.
"""
