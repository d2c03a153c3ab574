"""Sweeps: planning arithmetic in-process; real Hydra multiruns (`-m +sweep=...`) as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, compose_train
from omegaconf import OmegaConf

from contract import CONVENTIONS, BudgetRecord, RunSummary, Status, write_summary
from scaling.config import ConfigError
from scaling.family import SIZES
from scaling.store import RunStore
from scaling.sweep.best_lr import best_lr, write_tuned
from scaling.sweep.plan import plan_sweep
from scaling.sweep.spec import names, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SWEEP_TINY = tuple(o for o in TINY if not o.startswith("model="))


def sweep_overrides(data_cache: Path, runs: Path, sweep: str, *overrides: str) -> tuple[str, ...]:
    """The command line of `+sweep=<sweep>` with the tiny settings."""
    return (f"+sweep={sweep}", *SWEEP_TINY, f"runs_dir={runs}", f"data.cache_dir={data_cache}",
            *overrides)  # fmt: skip


def plan_of(
    data_cache: Path, runs: Path, sweep: str, *overrides: str, launcher: dict | None = None
):
    """The plan of `+sweep=<sweep>` with the tiny settings, composed as the sweeper does."""
    base_ov = sweep_overrides(data_cache, runs, sweep, *overrides)
    base = compose_train(*base_ov)
    return plan_sweep(
        parse_spec(base.sweep),
        lambda ov: compose_train(*base_ov, *ov),
        list(SIZES),
        OmegaConf.create(launcher or {}),
        base,
    )


def cli(tmp_path: Path, data_cache: Path, *overrides: str, timeout: int = 600, **kw):
    """`python -m scaling.train -m ...` with the tiny settings; returns the CompletedProcess."""
    cmd = [
        sys.executable,
        "-m",
        "scaling.train",
        "-m",
        *SWEEP_TINY,
        f"runs_dir={tmp_path / 'runs'}",
        f"data.cache_dir={data_cache}",
        *overrides,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kw)


def record(root: Path, status: str, size: str = "10k", lr: float = 1e-3, **fields) -> None:
    """Write a valid summary.json (through the run contract) into the run folder `root`."""
    budget = BudgetRecord(
        kind="tokens", value="4xC", label=fields.pop("label", "4xC"), convention="6n"
    )
    fpt = dict.fromkeys(CONVENTIONS, 6e4)
    s = RunSummary(
        run=root.name,
        experiment=root.parent.name,
        sweep=root.parent.name,
        status=Status(status),
        size=size,
        N=10_000,
        N_total=20_000,
        N_with_head=12_000,
        flops_per_token=fpt,
        D=800_000,
        steps=100,
        batch_size=8,
        seq_len=1000,
        C={c: 4.8e10 for c in CONVENTIONS},
        budget=budget,
        lr=lr,
        seed=0,
        corpus="stdlib",
        corpus_hash="sha256:0",
        vocab_size=256,
        config_hash="x",
        **fields,
    )
    write_summary(root / "summary.json", s)


def summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/summary.json")}


def planned_names(stdout: str) -> list[str]:
    """Run names from the plan table (the rows between its header and the totals)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run ")) + 1
    names = []
    for line in lines[start:]:
        if line.startswith(("dropped", "total:")):
            break
        names.append(line.split()[0])
    return names


# --- planning, in-process (no training) ---------------------------------------------------


def test_isoflop_runs_spend_their_budget(data_cache, tmp_path) -> None:
    budgets = [3e9, 1e10, 3e10]
    sp = plan_of(
        data_cache,
        tmp_path,
        "isoflop",
        f"sweep.budgets=[{','.join(map(str, budgets))}]",
        "sweep.sizes=[10k,20k,50k]",
        "sweep.min_steps=50",
        "sweep.tokens_per_param=[1,null]",
    )
    assert sp.runs and all(r.status == "new" for r in sp.runs)
    for r in sp.runs:
        c = float(r.group.removeprefix("C="))
        assert abs(r.C - c) / c < 0.01, (r.name, r.C, c)
        assert r.steps * r.tokens_per_step == r.D and pytest.approx(r.D * r.fpt) == r.C
    names = {r.name for r in sp.runs}
    assert {"10k-C3e9", "20k-C1e10", "50k-C3e10"} <= names
    # every grid point is either planned or dropped with its reason; nothing silently skipped
    dropped = dict(sp.dropped)
    assert len(names) + len(dropped) == len(budgets) * 3
    assert "steps < sweep.min_steps=50" in dropped["50k-C3e9"]
    assert "D/N=0.339 outside" in dropped["50k-C1e10"]  # below the [1, inf) window


def test_isoflop_runs_off_their_budget_by_rounding_are_dropped(data_cache, tmp_path) -> None:
    """Whole steps round D; with few steps a run would miss C by several %: it is dropped."""
    args = ("sweep.budgets=[1e9,3e9]", "sweep.sizes=[10k,100k]", "sweep.min_steps=1")
    args += ("sweep.tokens_per_param=null",)
    sp = plan_of(data_cache, tmp_path, "isoflop", *args)
    for r in sp.runs:
        c = float(r.group.removeprefix("C="))
        assert abs(r.C - c) / c <= 0.01, (r.name, r.C, c)
    dropped = dict(sp.dropped)
    assert len(sp.runs) + len(dropped) == 4
    assert "5 whole steps give C=1.072e+09, +7.2% off the budget" in dropped["100k-C1e9"]
    assert "sweep.flops_tolerance=0.01" in dropped["100k-C1e9"]
    one = ("sweep.budgets=[1e9]", "sweep.sizes=[100k]", "sweep.min_steps=1")  # 1 run to plan
    loose = plan_of(data_cache, tmp_path, "isoflop", *one, "sweep.tokens_per_param=null",
                    "sweep.flops_tolerance=0.1")  # fmt: skip
    assert "100k-C1e9" in {r.name for r in loose.runs}
    with pytest.raises(ConfigError, match="flops_tolerance=1.5 must be a fraction"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.flops_tolerance=1.5")


def test_budget_typo_is_an_error_not_a_dropped_run(data_cache, tmp_path) -> None:
    """Only a budget below one batch drops a run; a malformed one stops the plan, naming it."""
    with pytest.raises(ConfigError, match=r"train.tokens='2xc' is not a number.*1xC"):
        plan_of(data_cache, tmp_path, "data_ladder", "sweep.sizes=[10k]", "sweep.tokens=[1e5,2xc]")
    sp = plan_of(data_cache, tmp_path, "data_ladder", "sweep.sizes=[10k]", "sweep.tokens=[100,1e5]")
    assert [r.name for r in sp.runs] == ["10k-D1e5"]
    assert "less than one batch" in dict(sp.dropped)["model=10k train.tokens=100"]


def test_plan_accepts_a_run_stored_before_a_setting_existed(data_cache, tmp_path) -> None:
    """The plan decides like the launch (scaling.train.config_changes): an old run store whose config
    lacks only settings at their defaults is the same run; a changed value is refused."""
    args = ("data_ladder", "sweep.sizes=[10k]", "sweep.tokens=[1e5]")
    (run,) = plan_of(data_cache, tmp_path, *args).runs
    cfg = OmegaConf.to_container(
        compose_train(*sweep_overrides(data_cache, tmp_path, *args), *run.overrides), resolve=True
    )
    del cfg["model"]["dropout"]  # written before model.dropout existed (default 0.0)
    run.root.mkdir(parents=True)
    (run.root / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    record(run.root, "completed")  # config_hash "x": not this rule's hash
    (again,) = plan_of(data_cache, tmp_path, *args).runs
    assert again.status == "completed" and not again.launchable
    cfg["optim"]["lr"] = 1e-3
    (run.root / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(ConfigError, match="would overwrite other runs"):
        plan_of(data_cache, tmp_path, *args)


def test_demo_sweep_takes_any_launcher() -> None:
    """The demo's two local jobs come from its launcher option, so another launcher composes."""
    from hydra import compose, initialize_config_dir

    from scaling.sweep.launchers import launcher_parallelism

    def launcher(*overrides: str):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name="test"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        return launcher_parallelism(cfg.hydra.launcher, cfg)

    cores = os.cpu_count() or 1
    name, parallel, threads = launcher("+sweep=demo", "hydra/launcher=submitit_local")
    assert name == "submitit_local" and parallel <= cores and threads == max(1, cores // parallel)
    assert launcher("+sweep=demo")[:2] == ("joblib", 2)


@pytest.mark.parametrize(
    "name", [n if n == "demo" else pytest.param(n, marks=pytest.mark.slow) for n in names()]
)
def test_every_shipped_sweep_plans(name, data_cache, tmp_path) -> None:
    """Each file in sweeps/ plans as shipped (its own sizes, budgets and batch)."""
    base_ov = (f"+sweep={name}", f"runs_dir={tmp_path}", f"data.cache_dir={data_cache}")
    # a corpus cap whose validation split still holds the shipped train.eval_tokens (the demo's
    # 65,536 need 512 windows of 129 tokens: 2% of 4 MB)
    base_ov += ("data.max_bytes=4000000",)
    base = compose_train(*base_ov)
    sp = plan_sweep(
        parse_spec(base.sweep),
        lambda ov: compose_train(*base_ov, *ov),
        list(SIZES),
        OmegaConf.create({}),
        base,
    )
    assert sp.runs and sp.spec.name == name and base.experiment == name
    assert all(r.steps >= sp.spec.min_steps for r in sp.runs)


def test_bad_grids_fail_before_launch(data_cache, tmp_path) -> None:
    with pytest.raises(ConfigError, match="smaller than one batch of every size"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.budgets=[1e3]", "sweep.sizes=[10k,20k]")
    with pytest.raises(ConfigError, match="sweep.sizes is empty"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.sizes=[]")
    with pytest.raises(ConfigError, match=r"unknown size\(s\) \['1T'\]; valid: 10k, 20k"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.sizes=[10k,1T]")
    with pytest.raises(ConfigError, match="sweep.kind='chinchilla' is unknown"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.kind=chinchilla")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['budgetz'\]"):
        plan_of(data_cache, tmp_path, "isoflop", "+sweep.budgetz=[1e12]")
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="sweep.budgetz"):  # typed at composition
        plan_of(data_cache, tmp_path, "isoflop", "sweep.budgetz=[1e12]")
    with pytest.raises(ConfigError, match="no runs left after the filters"):
        plan_of(data_cache, tmp_path, "isoflop", "sweep.budgets=[1e10]", "sweep.min_steps=100000")


def test_wsd_branches_start_at_their_cooldown(data_cache, tmp_path) -> None:
    sp = plan_of(
        data_cache,
        tmp_path,
        "wsd",
        "sweep.sizes=[10k,20k]",
        "sweep.tokens=[1xC,2xC,4xC]",
        "sweep.min_steps=10",
    )
    for size in ("10k", "20k"):
        runs = {r.name: r for r in sp.runs if r.size == size}
        stable = runs[f"{size}-4xC"]
        assert stable.stage == 0
        ckpts = next(o for o in stable.overrides if o.startswith("train.checkpoint_steps="))
        for label in ("1xC", "2xC"):
            b = runs[f"{size}-{label}"]
            start = b.steps - round(0.2 * b.steps)
            assert b.stage == 1 and str(start) in ckpts
            assert f"train.init_from='{stable.root}/checkpoints/step{start}.ckpt'" in b.overrides
            assert f"schedule.wsd_total_steps={stable.steps}" in b.overrides
    w = sp.saving
    assert w and w["scratch"] == pytest.approx(sum(r.C for r in sp.runs))
    assert 0.2 < w["saved_frac"] < 0.5  # (1 + 2) x 80% of 4xC's first 80%... of 7 units


def test_wsd_isoflop_budgets_are_cooldowns_of_one_stable_run_per_size(data_cache, tmp_path):
    """sweep.kind=wsd_isoflop: every (size, budget) at D = C / FLOPs-per-token, the largest kept
    budget of each size its stable run, the smaller budgets branches from its checkpoints."""
    sp = plan_of(
        data_cache,
        tmp_path,
        "isoflop",
        "sweep.kind=wsd_isoflop",
        "schedule=wsd",
        "sweep.sizes=[10k,20k]",
        "sweep.budgets=[1e10,2e10,4e10]",
        "sweep.min_steps=10",
        "sweep.tokens_per_param=null",
    )
    assert sp.spec.kind == "wsd_isoflop"
    for size in ("10k", "20k"):
        runs = {r.name: r for r in sp.runs if r.size == size}
        assert sorted(runs) == sorted(f"{size}-C{c}" for c in ("1e10", "2e10", "4e10"))
        stable = runs[f"{size}-C4e10"]
        assert stable.stage == 0 and stable.start_step is None
        for c in ("1e10", "2e10"):
            b = runs[f"{size}-C{c}"]
            flops = b.C  # each branch trains its own budget
            assert b.stage == 1 and flops == pytest.approx(float(c), rel=0.01)
            assert b.start_step == b.steps - round(0.2 * b.steps)
            assert f"schedule.wsd_total_steps={stable.steps}" in b.overrides
    assert sp.saving and sp.saving["saved_frac"] > 0.3


def test_lr_sweep_names_and_tuned_table(data_cache, tmp_path) -> None:
    sp = plan_of(
        data_cache,
        tmp_path,
        "lr",
        "sweep.sizes=[10k]",
        "sweep.lrs=[1e-3,1e-2]",
        "sweep.min_steps=1",
    )
    assert [(r.name, r.lr) for r in sp.runs] == [
        ("10k-4xC-lr1e-3", 1e-3),
        ("10k-4xC-lr0.01", 1e-2),
    ]
    runs = tmp_path / "runs" / "lr"
    for name, lr, loss in (("10k-a", 1e-3, 2.0), ("10k-b", 1e-2, 1.5), ("20k-a", 3e-3, 1.7)):
        record(runs / name, "completed", size=name[:3], lr=lr, final_val_loss=loss)
    (runs / "10k-x").mkdir()
    (runs / "10k-x" / "summary.json").write_text('{"run": "10k-x", "status": "compl')  # torn
    out = tmp_path / "conf" / "optim"
    out.mkdir(parents=True)
    (out / "adamw.yaml").write_text((ROOT / "conf" / "optim" / "adamw.yaml").read_text())
    result = best_lr(runs)
    best = result.best
    assert best["10k"].at_grid_edge and not best["20k"].at_grid_edge  # 1e-2 is the top
    assert [e.path.parent.name for e in result.corrupt] == ["10k-x"]  # listed, not fatal
    assert "at the edge of the grid" in write_tuned(best, out / "tuned.yaml", runs)
    # the written group option composes (defaults: adamw) and feeds the per-size LR table
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(tmp_path / "conf"), version_base="1.3"):
        cfg = compose("optim/tuned")
    assert dict(cfg.optim.lr_table) == {"10k": 0.01, "20k": 0.003}
    assert cfg.optim.weight_decay == 0.1
    # losses of different budgets do not rank LRs: refused, naming the budgets
    record(runs / "10k-c", "completed", lr=3e-3, final_val_loss=1.0, label="8xC")
    with pytest.raises(
        ConfigError, match=r"size 10k has lr runs at several budgets \['4xC', '8xC'\]"
    ):
        best_lr(runs)


# --- real multiruns (subprocesses) ------------------------------------------------------

ISO = ("+sweep=isoflop", "sweep.budgets=[3e9,1e10]", "sweep.sizes=[10k,20k]", "sweep.min_steps=10")


@pytest.mark.slow
def test_plan_lists_what_launch_runs_and_rerun_launches_nothing(tmp_path, data_cache) -> None:
    plan = cli(tmp_path, data_cache, *ISO, "sweep.plan=true")
    assert plan.returncode == 0, plan.stderr
    names = planned_names(plan.stdout)
    assert names and "estimated wall time" in plan.stdout and "total:" in plan.stdout
    assert not (tmp_path / "runs" / "isoflop").exists()  # plan mode launches nothing

    run = cli(tmp_path, data_cache, *ISO)
    assert run.returncode == 0, run.stderr
    done = summaries(tmp_path / "runs" / "isoflop")
    assert sorted(done) == sorted(names)
    assert all(s["status"] == "completed" and s["sweep"] == "isoflop" for s in done.values())
    assert f"completed {len(names)} / diverged 0 / failed 0 / skipped 0" in run.stdout

    again = cli(tmp_path, data_cache, *ISO)
    assert again.returncode == 0, again.stderr
    assert f"completed 0 / diverged 0 / failed 0 / skipped {len(names)}" in again.stdout
    assert "Launching" not in again.stdout + again.stderr
    assert summaries(tmp_path / "runs" / "isoflop") == done


@pytest.mark.slow
def test_diverging_run_is_recorded_and_others_complete(tmp_path, data_cache) -> None:
    out = cli(
        tmp_path,
        data_cache,
        "+sweep=lr",
        "sweep.sizes=[10k]",
        "sweep.lrs=[50,3e-3]",
        "sweep.min_steps=1",
        "train.tokens=null",
        "train.steps=40",
        "optim.grad_clip=0",
        "schedule.warmup_frac=0",
    )
    assert out.returncode == 0, out.stderr
    s = summaries(tmp_path / "runs" / "lr")
    assert s["10k-S40-lr50"]["status"] == "diverged"
    assert s["10k-S40-lr3e-3"]["status"] == "completed"
    assert "completed 1 / diverged 1 / failed 0 / skipped 0" in out.stdout


def test_unknown_sweep_or_launcher_fails_at_composition_naming_the_options() -> None:
    """In-process twin of the CLI test below: Hydra refuses both before any planning."""
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"(?s)sweep/nope.*isoflop"):
        compose_train("+sweep=nope")
    with pytest.raises(MissingConfigException, match=r"(?s)launcher/ray.*joblib.*submitit_slurm"):
        compose_train("+sweep=isoflop", "hydra/launcher=ray")


@pytest.mark.slow
def test_bad_sweep_or_launcher_fails_before_launch(tmp_path, data_cache) -> None:
    nope = cli(tmp_path, data_cache, "+sweep=nope")
    assert nope.returncode != 0 and "sweep/nope" in nope.stderr and "isoflop" in nope.stderr
    ray = cli(tmp_path, data_cache, *ISO, "hydra/launcher=ray")
    assert ray.returncode != 0 and "hydra/launcher/ray" in ray.stderr
    assert "joblib" in ray.stderr and "submitit_slurm" in ray.stderr  # what is installed
    assert not (tmp_path / "runs" / "isoflop").exists()


@pytest.mark.slow
def test_corrupt_summary_is_listed_and_locked_run_skipped_others_run(tmp_path, data_cache) -> None:
    """A corrupt summary.json never aborts the sweep: that run is listed (path and parse error)
    in the plan and the end table, not launched; a run another process holds is skipped, naming
    the holder; the rest train."""
    args = ("+sweep=data_ladder", "sweep.sizes=[10k]", "sweep.tokens=[1e4,2e4,3e4]")
    args += ("sweep.min_steps=10",)
    folder = tmp_path / "runs" / "data_ladder"
    (folder / "10k-D1e4").mkdir(parents=True)
    (folder / "10k-D1e4" / "summary.json").write_text('{"run": "10k-D1e4", "status": "comp')
    with RunStore(folder / "10k-D2e4").lock() as holder:
        assert holder is None
        out = cli(tmp_path, data_cache, *args)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 1, out.stderr[-3000:]  # something is left to repair
    plan, _, end = out.stdout.partition("results")
    assert "corrupt (1), not launched" in plan
    assert f"10k-D1e4: corrupt run summary {folder / '10k-D1e4' / 'summary.json'}" in plan
    assert "Expecting" in plan or "Unterminated" in plan  # the parse error itself
    assert "completed 1 / diverged 0 / failed 0 / skipped 0 / locked 1 / corrupt 1" in end
    assert f"held by host {socket.gethostname()} pid {os.getpid()}" in end
    assert json.loads((folder / "10k-D3e4" / "summary.json").read_text())["status"] == "completed"
    assert not (folder / "10k-D2e4" / "summary.json").exists()  # its holder did not write one
    assert (folder / "10k-D1e4" / "summary.json").read_text().endswith('"comp')  # untouched


# --- slow: launchers, interruption, DDP, WSD ------------------------------------------


@pytest.mark.slow
def test_killed_worker_is_reported_and_its_run_resumed(tmp_path, data_cache) -> None:
    """A launcher job that dies hard (SIGKILL: OOM killer, pre-emption) does not lose the end
    table; its run is left "running" and a relaunch resumes it from its last checkpoint."""
    args = (
        "+sweep=data_ladder",
        "sweep.sizes=[10k]",
        "sweep.tokens=[1e5,1e6]",
        "sweep.min_steps=10",
        "train.checkpoint_every=20",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    cmd = [sys.executable, "-m", "scaling.train", "-m", *SWEEP_TINY]
    cmd += [f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={data_cache}", *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    folder = tmp_path / "runs" / "data_ladder"
    ckpt = folder / "10k-D1e6" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        s = summaries(folder)
        if ckpt.exists() and s.get("10k-D1e5", {}).get("status") == "completed":
            break
        time.sleep(0.2)
    s = summaries(folder)
    assert s["10k-D1e6"]["status"] == "running", "the long run finished before it was killed"
    os.kill(s["10k-D1e6"]["pid"], signal.SIGKILL)  # only its worker dies, not the sweep
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # the sweep says something failed, after its table
    assert "completed 1 / diverged 0 / failed 1 / skipped 0" in out, out
    assert "the launcher stopped: TerminatedWorkerError" in out
    assert summaries(folder)["10k-D1e6"]["status"] == "running"

    again = cli(tmp_path, data_cache, *args)
    assert again.returncode == 0, again.stderr
    s = summaries(folder)
    assert s["10k-D1e6"]["status"] == "completed" and s["10k-D1e6"]["resumed_from_step"] > 0
    assert "completed 1 / diverged 0 / failed 0 / skipped 1" in again.stdout


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
def test_orphaned_workers_stop_when_the_sweep_is_killed(tmp_path, data_cache) -> None:
    """SIGKILL the sweep process: its joblib workers stop within seconds instead of training
    on (issue 17); their runs stay "running", so a relaunch resumes them."""
    args = ("+sweep=data_ladder", "sweep.sizes=[10k]", "sweep.tokens=[1e7,1.1e7]")
    args += ("train.checkpoint_every=50", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    cmd = [sys.executable, "-m", "scaling.train", "-m", *SWEEP_TINY]
    cmd += [f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={data_cache}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = tmp_path / "runs" / "data_ladder"
    workers: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(workers) < 2:
            workers = [s["pid"] for s in summaries(folder).values() if s["status"] == "running"]
            time.sleep(0.2)
        assert len(workers) == 2 and proc.pid not in workers, proc.poll()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.time()
        while time.time() - t0 < 20 and any(alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(alive(p) for p in workers), "the workers outlived their sweep by 20 s"
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    s = summaries(folder)
    assert [v["status"] for v in s.values()] == ["running", "running"]
    again = cli(tmp_path, data_cache, *args, "sweep.plan=true")
    assert again.returncode == 0, again.stderr
    assert "2 runs, 2 to launch" in again.stdout  # relaunched, they resume


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers(tmp_path, data_cache, launcher) -> None:
    extra = (
        ("hydra.launcher.n_jobs=2", "trainer.num_threads=null")
        if launcher == "joblib"
        else ("hydra.launcher.timeout_min=10",)
    )
    out = cli(tmp_path, data_cache, *ISO, f"hydra/launcher={launcher}", *extra)
    assert out.returncode == 0, out.stderr
    s = summaries(tmp_path / "runs" / "isoflop")
    assert len(s) == 3 and all(v["status"] == "completed" for v in s.values())
    if launcher == "joblib":
        assert "launcher joblib x2, 1 thread(s)/run" in out.stdout  # cores / jobs on 2 cores


@pytest.mark.slow
def test_ddp_two_processes_single_run_and_in_multirun(tmp_path, data_cache) -> None:
    ddp = ("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaling.train",
            *SWEEP_TINY,
            "model=10k",
            "train.steps=30",
            f"runs_dir={tmp_path / 'runs'}",
            f"data.cache_dir={data_cache}",
            *ddp,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr
    one = summaries(tmp_path / "runs" / "default")
    assert list(one) == ["10k-S30"] and one["10k-S30"]["status"] == "completed"

    ref = cli(tmp_path, data_cache, *ISO, "sweep.name=ref")  # the same sweep on one process
    assert ref.returncode == 0, ref.stderr
    out = cli(tmp_path, data_cache, *ISO, *ddp)
    assert out.returncode == 0, out.stderr
    # child ranks run their own job, never the sweep again (Lightning #16694, Hydra #2070)
    assert (out.stdout + out.stderr).count("Launching 3 jobs") == 1
    assert "completed 3 / diverged 0 / failed 0" in out.stdout
    got, want = summaries(tmp_path / "runs" / "isoflop"), summaries(tmp_path / "runs" / "ref")
    assert sorted(got) == sorted(want)
    for name, s in got.items():
        # two ranks splitting each global batch train the same model as one process
        assert s["final_val_loss"] == pytest.approx(want[name]["final_val_loss"], abs=1e-3)
        rows = (tmp_path / "runs" / "isoflop" / name / "metrics.csv").read_text().splitlines()
        steps = [row.split(",")[0] for row in rows[1:]]
        assert len(steps) == len(set(steps))  # rank 0 alone writes the rows


@pytest.mark.slow
def test_wsd_sweep_branches_from_the_stable_run(tmp_path, data_cache) -> None:
    out = cli(
        tmp_path,
        data_cache,
        "+sweep=wsd",
        "sweep.sizes=[10k]",
        "sweep.tokens=[5e4,1e5,2e5]",
        "sweep.min_steps=10",
    )
    assert out.returncode == 0, out.stderr
    s = summaries(tmp_path / "runs" / "wsd")
    assert {k: v["status"] for k, v in s.items()} == dict.fromkeys(
        ("10k-D5e4", "10k-D1e5", "10k-D2e5"), "completed"
    )
    stable = s["10k-D2e5"]
    for name in ("10k-D5e4", "10k-D1e5"):
        b = s[name]
        start = b["steps"] - round(0.2 * b["steps"])
        assert b["init_from"].endswith(f"10k-D2e5/checkpoints/step{start}.ckpt")
        rows = (tmp_path / "runs" / "wsd" / name / "metrics.csv").read_text().splitlines()[1:]
        assert int(rows[0].split(",")[0]) > start  # the branch trains only its cooldown
        assert b["D"] < stable["D"]
    assert "% saved" in out.stdout and "% of the from-scratch FLOPs saved" in out.stdout


def test_progress_line_counts_finished_runs(tmp_path) -> None:
    from scaling.progress import PROGRESS_FILE, progress_line

    exp = tmp_path / "demo"
    for name, status in (("a", "completed"), ("b", "diverged"), ("c", "running")):
        record(exp / name, status)
    (exp / "d").mkdir()
    (exp / "d" / "summary.json").write_text("{")  # corrupt: counted as not done, no traceback
    (exp / PROGRESS_FILE).write_text(
        json.dumps({"sweep": "demo", "runs": ["a", "b", "c", "d"], "started": time.time() - 90})
    )
    line = progress_line(exp / "a")
    assert line is not None and line.startswith("[sweep demo] 2/4 runs done, 1m30s elapsed")
    assert "left" in line
    assert progress_line(tmp_path / "other" / "x") is None
