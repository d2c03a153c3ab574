"""Sweeps: expand a file in sweeps/ into runs, plan and validate them all, launch, report.

A sweep file sets `sweep.kind` and its grid (see sweeps/*.yaml); the Hydra sweeper plugin in
hydra_plugins/scaling_sweeper hands the composed config to `launch.run_sweep`. Every run is
composed and planned with the trainer's own `plan_run` before the first one launches, so what
the plan prints is exactly what a launch runs, and a bad grid fails before any training.

    scaling-train -m +sweep=isoflop sweep.plan=true         # print the runs, launch nothing
    scaling-train -m +sweep=isoflop hydra/launcher=joblib   # run them, 2 at a time here
    scaling-best-lr runs/lr                                 # lr sweep -> conf/optim/tuned.yaml

One module per concern: `runs` (the records), `kinds` (one registered class per sweep kind),
`spec` (the `sweep:` node), `planner` (one run through plan_run), `plan` (the whole grid),
`launchers` (what runs how many at a time), `estimate` (wall time), `report` (plan and end
tables), `launch` (stage by stage), `watchdog` (orphaned workers stop), `best_lr`.
"""
