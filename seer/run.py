"""Run hygiene: the run directory, its records and its checkpoints.

``runs/<name>/<stage>/`` holds::

    config.yaml     the fully resolved config (reloads as a recipe)
    meta.json       seed, package versions, git commit, command line, derived values
    metrics.jsonl   one JSON object per logged optimizer step (also TensorBoard event files in tb/)
    samples.jsonl   sample completions every ``sample_every`` steps
    state/          the resumable checkpoint: θ, optimizer, RNG states, the step/phase/epoch cursor
    model/          the final backend checkpoint (RLVR: the evaluator; RLMT: the reprompting policy)

Every write is atomic (``seer.io``): ``state/`` is written to a temporary folder and renamed over the old one, so a
run killed at any moment leaves a complete checkpoint. Resuming truncates ``metrics.jsonl``/``samples.jsonl`` to the
checkpoint's step, so a resumed run's records are those of an uninterrupted one. Only the main process writes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seer.config import RUN_CONTROL, ConfigError, config_dict, config_yaml
from seer.io import atomic_replace_dir, atomic_write_json, atomic_write_text

PACKAGES = ("seer", "torch", "transformers", "tokenizers", "accelerate", "numpy", "safetensors", "peft")
STATE_DIR, MODEL_DIR = "state", "model"


@dataclass
class Cursor:
    """Where training stands: the next batch to run is batch ``batch`` of epoch ``epoch`` of curriculum phase
    ``phase`` (index into the stage's phases); ``step`` optimizer steps are done."""

    step: int = 0
    phase: int = 0
    epoch: int = 0
    batch: int = 0


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def frozen_digest(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """A bit-exact fingerprint of ϕ (one hash per tensor), cheap to keep and compare at every checkpoint."""
    out = {}
    for name, t in sorted(state.items()):
        h = hashlib.blake2b(digest_size=16)
        t = t.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[name] = h.hexdigest()
    return out


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    """Torch intra-op threads for this process; 0 leaves torch's default (``OMP_NUM_THREADS`` or every core). The
    world's models are tiny: on a shared 2-core machine one or two threads ran fastest (many small ops, where more
    threads only add synchronisation)."""
    if n < 0:
        raise ValueError(f"threads must be >= 0 (0 = torch's default), got {n}")
    if n:
        torch.set_num_threads(n)


def check_run_dir(cfg: Any) -> None:
    """Refuse to clobber a run: an existing run dir needs ``--resume`` or ``--overwrite``; ``--resume`` needs a
    checkpoint and the same config. Called before anything is loaded or written."""
    run_dir = cfg.run_dir
    exists = run_dir.exists() and any(run_dir.iterdir())
    if cfg.resume:
        if not (run_dir / STATE_DIR / "cursor.json").is_file():
            raise ConfigError(f"--resume: {run_dir / STATE_DIR} has no checkpoint to resume from")
        saved = run_dir / "config.yaml"
        if saved.is_file():
            import yaml

            old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
            new = config_dict(cfg, run_control=False)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RUN_CONTROL)
            if diff:
                raise ConfigError(
                    f"--resume: config differs from {saved} in {diff}; a resumed run must use the same config"
                )
    elif exists and not cfg.overwrite:
        raise ConfigError(f"{run_dir} already exists; pass --resume to continue it or --overwrite to start afresh")


class Run:
    """The records of one training run. Construct only after validation passed; on non-main processes every
    write is a no-op."""

    def __init__(self, cfg: Any, is_main: bool = True, derived: dict[str, Any] | None = None) -> None:
        self.cfg, self.is_main = cfg, is_main
        self.dir: Path = cfg.run_dir
        self.cursor = Cursor()
        self._tb = None
        self._wandb = None
        if not is_main:
            return
        if cfg.overwrite and self.dir.exists() and not cfg.resume:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / "config.yaml", config_yaml(cfg))
        meta = {
            "stage": cfg.stage,
            "seed": cfg.seed,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "command": sys.argv,
            "derived": {"run_dir": str(self.dir), **(derived or {})},
        }
        meta_file = self.dir / ("meta.json" if not cfg.resume else "meta.resume.json")
        atomic_write_json(meta_file, meta)

    # -- records --------------------------------------------------------------------------------------------------
    def open_writers(self, purge_after: int = 0) -> None:
        """Start the metric writers; on resume drop records after step ``purge_after`` (written after the last
        checkpoint by the killed run)."""
        if not self.is_main:
            return
        for name in ("metrics.jsonl", "samples.jsonl"):
            _truncate_jsonl(self.dir / name, purge_after)
        if self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tb"), purge_step=purge_after + 1 if purge_after else None)
        if self.cfg.wandb:
            try:
                import wandb
            except ImportError as e:
                raise ConfigError("wandb: true needs the wandb package (pip install 'seer[wandb]')") from e
            self._wandb = wandb.init(project="seer", name=f"{self.cfg.name}-{self.cfg.stage}",
                                     config=config_dict(self.cfg), dir=str(self.dir), resume="allow")

    def log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.is_main:
            return
        _append_jsonl(self.dir / "metrics.jsonl", {"step": step, **metrics})
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_samples(self, step: int, records: list[dict[str, Any]]) -> None:
        if not self.is_main:
            return
        for r in records:
            _append_jsonl(self.dir / "samples.jsonl", {"step": step, **r})

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def save_state(self, backend: Any, optimizer: torch.optim.Optimizer, cursor: Cursor,
                   extra: dict[str, Any] | None = None) -> None:
        """Atomically write ``state/``: θ, optimizer, RNG states and the cursor."""
        if not self.is_main:
            return
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".state."))
        try:
            torch.save([p.detach().cpu() for p in backend.trainable_parameters()], tmp / "theta.pt")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(rng_state(), tmp / "rng.pt")
            atomic_write_json(tmp / "cursor.json", {**asdict(cursor), **(extra or {})})
            atomic_replace_dir(tmp, self.dir / STATE_DIR)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save_model(self, backend: Any, name: str = MODEL_DIR) -> Path:
        """Atomically write a full backend checkpoint to ``<run>/<name>/``."""
        target = self.dir / name
        if self.is_main:
            tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=f".{name}."))
            try:
                backend.save(tmp)
                atomic_replace_dir(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target


def load_state(run_dir: Path, backend: Any, optimizer: torch.optim.Optimizer) -> tuple[Cursor, dict[str, Any]]:
    """Restore θ, optimizer and RNG states from ``<run_dir>/state``; returns the cursor and its extra fields."""
    state = Path(run_dir) / STATE_DIR
    info = json.loads((state / "cursor.json").read_text())
    theta = torch.load(state / "theta.pt", weights_only=True)
    params = backend.trainable_parameters()
    if len(theta) != len(params) or any(a.shape != b.shape for a, b in zip(theta, params, strict=False)):
        raise ConfigError(
            f"{state / 'theta.pt'}: holds {len(theta)} tensors that do not match the model's {len(params)} "
            "trainable parameters; resume with the same model the run started from"
        )
    with torch.no_grad():
        for p, t in zip(params, theta, strict=True):
            p.copy_(t.to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(state / "optimizer.pt", weights_only=False))
    set_rng_state(torch.load(state / "rng.pt", weights_only=False))
    cursor = Cursor(**{k: info.pop(k) for k in ("step", "phase", "epoch", "batch")})
    return cursor, info


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (atomic rewrite)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
    atomic_write_text(path, "".join(k + "\n" for k in keep))
