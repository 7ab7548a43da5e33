"""Pictures of memory: memory maps of simulated machines and real snapshots
(:mod:`fragsim.viz.memmap`) and self-contained HTML reports (:mod:`fragsim.viz.html`,
:mod:`fragsim.viz.reports`). Everything here reads the simulator's state or a snapshot and
changes neither."""
