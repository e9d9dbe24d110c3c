"""Run hygiene: the run directory, its records and its checkpoints.

``runs/<name>/<stage>/`` holds::

    config.yaml     the fully resolved config (reloads as a recipe)
    meta.json       seed, package versions, git commit, command line, derived values
    metrics.jsonl   one JSON object per logged optimizer step (also TensorBoard event files in tb/)
    samples.jsonl   sample completions every ``sample_every`` steps
    inputs.json     the sha256 of every input (data files, model, evaluator ...): a resume refuses a changed one
    state/          the resumable checkpoint: θ, optimizer, RNG states, the step/phase/epoch cursor, manifest.json
    state.1/ ...    the previous checkpoints (``keep_checkpoints``, default 2 in all), the fallback of a damaged one
    model/          the final backend checkpoint (RLVR: the evaluator; RLMT: the reprompting policy)

Every write is atomic (``seer.io``): a checkpoint is written to a temporary folder, then the older ones shift
(``state`` → ``state.1`` …) and it is renamed into place, so a run killed at any moment leaves a complete
checkpoint. Each holds a manifest of its files' sizes and sha256, checked on load: a damaged newest checkpoint falls
back to the previous one with a warning. Temporary folders a kill left behind are removed when the run next starts.
``--overwrite`` moves the old run aside and removes it only once the new run wrote its first checkpoint (until then a
failure puts it back). Resuming truncates ``metrics.jsonl``/``samples.jsonl`` to the checkpoint's step, so a resumed
run's records are those of an uninterrupted one. Only the main process writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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

from seer.config import RUN_CONTROL, ConfigError, config_dict, config_yaml, load_yaml
from seer.io import atomic_replace_dir, atomic_write_json, atomic_write_text

PACKAGES = ("seer", "torch", "transformers", "tokenizers", "accelerate", "numpy", "safetensors", "peft")
STATE_DIR, MODEL_DIR = "state", "model"
MANIFEST, INPUTS = "manifest.json", "inputs.json"
LEGACY_OLD = ".state.old"  # what atomic_replace_dir leaves when a kill falls between its two renames
# config keys naming the run's inputs: their content is hashed, so a moved file resumes and a changed one does not
INPUT_KEYS = ("model", "quadruplets", "samples", "evaluator", "init", "generator")
# where the run is, not what it is: a run folder moved elsewhere (another output_dir) resumes
LOCATION_KEYS = ("output_dir", "name")


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


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _aside(run_dir: Path) -> Path:
    """Where ``--overwrite`` keeps the old run until the new one has its first checkpoint."""
    return run_dir.with_name(f".{run_dir.name}.replaced")


def check_optional_packages(cfg: Any) -> None:
    """The packages the config asks for are importable: checked before anything is deleted or written."""
    import importlib.util

    if getattr(cfg, "wandb", False) and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb: true needs the wandb package (pip install 'seer[wandb]')")
    if getattr(cfg, "tensorboard", False) and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard: true needs the tensorboard package (pip install tensorboard), or set "
                          "--tensorboard false")


def recover_interrupted_overwrite(run_dir: Path) -> None:
    """A kill during ``--overwrite`` before the new run's first checkpoint leaves the old run aside: put it back
    (the new run had nothing worth keeping); once the new run has a checkpoint, the old one is obsolete."""
    aside = _aside(run_dir)
    if not aside.is_dir() or not _main_process():
        return
    if find_checkpoints(run_dir):
        shutil.rmtree(aside)
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(aside, run_dir)
    print(f"seer: warning: {run_dir}: an earlier --overwrite was interrupted before the new run's first checkpoint; "
          "the previous run was put back", file=sys.stderr)


def check_run_dir(cfg: Any) -> None:
    """Check the device and optional packages, then refuse to clobber a run: an existing run dir needs ``--resume``
    or ``--overwrite``; ``--resume`` needs a checkpoint, the recorded config (the same one, up to the run folder's
    location) and unchanged inputs. Called before anything is loaded or written (it only puts back a run an
    interrupted ``--overwrite`` moved aside)."""
    from seer.backends.base import BackendError, check_device

    run_dir = cfg.run_dir
    try:  # here, not in the config: a recipe for GPUs still loads (and can be inspected) on a CPU machine
        check_device(cfg.device, "device")
    except BackendError as e:
        raise ConfigError(str(e)) from e
    check_optional_packages(cfg)
    recover_interrupted_overwrite(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder; the run directory must be a folder")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if cfg.resume:
        if not find_checkpoints(run_dir):
            raise ConfigError(f"--resume: {run_dir / STATE_DIR} has no checkpoint to resume from")
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} is missing, so the settings this run was started with are unknown; "
                              "restore it, or start afresh with --overwrite")
        old = load_yaml(saved) or {}
        if not isinstance(old, dict):
            raise ConfigError(f"{saved}: expected a mapping of config keys, got {type(old).__name__}")
        new = config_dict(cfg, run_control=False)
        skip = set(RUN_CONTROL) | set(LOCATION_KEYS) | set(INPUT_KEYS)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in skip)
        if diff:
            said = "; ".join(f"{k}: {old.get(k, '(unset)')!r} when started, {new.get(k, '(unset)')!r} now"
                             for k in diff)
            raise ConfigError(f"--resume: config differs from {saved} in {diff} ({said}); a resumed run must use "
                              "the same config")
        check_inputs(cfg, old)
    elif exists and not cfg.overwrite:
        raise ConfigError(f"{run_dir} already exists; pass --resume to continue it or --overwrite to start afresh")


# -- inputs: what a resume must find unchanged ---------------------------------------------------------------------
def _input_path(value: str) -> Path:
    """A run directory given for a checkpoint stands for its ``model/``."""
    from seer.backends.base import BACKEND_FILE

    p = Path(value)
    if not (p / BACKEND_FILE).is_file() and (p / MODEL_DIR / BACKEND_FILE).is_file():
        p = p / MODEL_DIR
    return p


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# a data file's records name images (relative to its folder) that training reads: their content counts too
IMAGE_FIELDS = {"quadruplets": ("image_chosen", "image_rejected")}


def _referenced_images(path: Path, names: tuple[str, ...]) -> list[str]:
    out = set()
    with path.open("rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:  # the loader reports bad lines; here only the images of good ones matter
                continue
            if isinstance(rec, dict):
                out.update(v for n in names if isinstance(v := rec.get(n), str))
    return sorted(out)


def _digest_files(root: Path, rels: list[str], cache: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    files, total = {}, hashlib.sha256()
    for rel in rels:
        f = root / rel
        if not f.is_file():
            files[rel] = [None, None, None]
        else:
            st = f.stat()
            hit = (cache or {}).get(rel)
            digest = hit[2] if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns else _file_sha256(f)
            files[rel] = [st.st_size, st.st_mtime_ns, digest]
        total.update(f"{rel}\0{files[rel][0]}\0{files[rel][2]}\n".encode())
    return files, total.hexdigest()


def digest_input(path: Path, cache: dict[str, Any] | None = None, images: tuple[str, ...] = ()) -> dict[str, Any]:
    """sha256 of a file (with the images its records name in the fields ``images``), or of a folder's files
    (relative path, size, content); ``cache`` (a previous record's ``files``) skips rehashing a file of unchanged
    size and mtime, so resuming from a multi-GB model is cheap."""
    path = Path(path)
    if path.is_file():
        own = _file_sha256(path)
        if not images:
            return {"path": str(path.resolve()), "sha256": own}
        files, total = _digest_files(path.parent, _referenced_images(path, images), cache)
        return {"path": str(path.resolve()), "sha256": hashlib.sha256(f"{own}\0{total}".encode()).hexdigest(),
                "file_sha256": own, "files": files}
    if not path.is_dir():
        return {"path": str(path.resolve()), "sha256": None}
    rels = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    files, total = _digest_files(path, rels, cache)
    return {"path": str(path.resolve()), "sha256": total, "files": files}


def record_inputs(cfg: Any) -> dict[str, Any]:
    return {k: digest_input(_input_path(v), images=IMAGE_FIELDS.get(k, ())) for k in INPUT_KEYS
            if (v := getattr(cfg, k, None))}


def check_inputs(cfg: Any, old_config: dict[str, Any]) -> None:
    """On resume: each input holds what it held when the run started (by content: a moved file is fine)."""
    record_file = cfg.run_dir / INPUTS
    if not record_file.is_file():
        # a run from before inputs were recorded: fall back to comparing the paths as given
        diff = [k for k in INPUT_KEYS if k in old_config and old_config.get(k) != getattr(cfg, k, None)]
        if diff:
            raise ConfigError(f"--resume: config differs from {cfg.run_dir / 'config.yaml'} in {diff}; a resumed run "
                              "must use the same inputs")
        return
    from seer.io import read_json_object

    recorded = read_json_object(record_file, ConfigError)
    for key in INPUT_KEYS:
        value = getattr(cfg, key, None)
        before = recorded.get(key)
        if not value and before is None:
            continue
        if not value or before is None:
            raise ConfigError(f"--resume: {key} is {value!r} now but was {old_config.get(key)!r} when the run started")
        now = digest_input(_input_path(value), before.get("files"), IMAGE_FIELDS.get(key, ()))
        if now["sha256"] is None:
            raise ConfigError(f"--resume: {key} {value}: not found (the run started from {before['path']})")
        if now["sha256"] != before["sha256"]:
            changed = ""
            if before.get("file_sha256") and before["file_sha256"] != now.get("file_sha256"):
                changed = " (the file itself changed)"
            elif "files" in before and "files" in now:
                names = sorted(n for n in set(before["files"]) | set(now["files"])
                               if (before["files"].get(n) or [None] * 3)[2] != (now["files"].get(n) or [None] * 3)[2])
                changed = f" (files changed: {', '.join(names[:5])}{' …' if len(names) > 5 else ''})"
            raise ConfigError(f"--resume: {key} {now['path']} changed since the run started{changed}: its sha256 "
                              f"was {before['sha256'][:12]}…, now {now['sha256'][:12]}…; resume with the same "
                              "inputs, or start afresh with --overwrite")


# -- sharded θ (FSDP2): checkpoints always hold full tensors ---------------------------------------------------------
def _is_sharded(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` gathered to its full shape when it is a shard (an all-gather: every process must call it)."""
    return t.full_tensor().detach() if _is_sharded(t) else t.detach()


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded tensor gathered, so a checkpoint written by N sharded processes
    has the layout one process writes (and loads). Collective when sharded: every process must call it."""
    state = optimizer.state_dict()
    if not any(_is_sharded(p) for g in optimizer.param_groups for p in g["params"]):
        return state
    state["state"] = {i: {k: full_tensor(v).cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                      for i, s in state["state"].items()}
    return state


def shard_like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """This process's shard of ``full`` laid out as the sharded ``param`` (a full tensor of another shape, e.g.
    AdamW's scalar step, is returned as is). Every process holds ``full``, so each slices it locally: no traffic."""
    if not _is_sharded(param) or tuple(full.shape) != tuple(param.shape):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.detach().to(param.device, param.dtype), param.device_mesh, param.placements,
                             src_data_rank=None)


def _shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(_is_sharded(p) for p in params):
        return state
    by_index = {}
    for saved_group, group in zip(state["param_groups"], optimizer.param_groups, strict=False):
        by_index.update(zip(saved_group["params"], group["params"], strict=False))
    state = dict(state)
    state["state"] = {i: {k: shard_like(v, by_index[i]) if isinstance(v, torch.Tensor) and i in by_index else v
                          for k, v in s.items()} for i, s in state["state"].items()}
    return state


@contextlib.contextmanager
def full_parameters(module: torch.nn.Module | None) -> Any:
    """Within the block, ``module``'s sharded parameters are replaced by full copies (an all-gather on every
    process), so a backend's own ``save()`` writes the same files as an unsharded run; the shards are put back
    after. No FSDP forward may run inside the block."""
    swapped = []
    try:
        if module is not None:
            for sub in module.modules():
                for name, p in list(sub._parameters.items()):
                    if p is not None and _is_sharded(p):
                        swapped.append((sub, name, p))
                        sub._parameters[name] = torch.nn.Parameter(full_tensor(p), requires_grad=p.requires_grad)
        yield
    finally:
        for sub, name, p in swapped:
            sub._parameters[name] = p


# -- checkpoints --------------------------------------------------------------------------------------------------
def _checkpoint_names(run_dir: Path) -> list[Path]:
    """The checkpoint folders present: ``state``, ``state.1`` …, and a legacy ``.state.old``."""
    out = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name == STATE_DIR or p.name == LEGACY_OLD or (p.name.startswith(f"{STATE_DIR}.")
                                                               and p.name[len(STATE_DIR) + 1:].isdigit()):
                if p.is_dir():
                    out.append(p)
    return out


def find_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders that have a cursor (validity is checked on load)."""
    return [p for p in _checkpoint_names(Path(run_dir)) if (p / "cursor.json").is_file()]


def checkpoint_manifest(folder: Path) -> dict[str, Any]:
    return {name: {"size": (folder / name).stat().st_size, "sha256": _file_sha256(folder / name)}
            for name in sorted(os.listdir(folder)) if name != MANIFEST and (folder / name).is_file()}


def verify_checkpoint(folder: Path) -> str | None:
    """None if the checkpoint's files match its manifest; else what is wrong. A checkpoint from before manifests
    passes here and is checked by loading it."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return f"{manifest_file}: unreadable"
    for name, want in files.items():
        f = folder / name
        if not f.is_file():
            return f"{f}: missing"
        if f.stat().st_size != want["size"]:
            return f"{f}: {f.stat().st_size} bytes, the manifest says {want['size']} (truncated?)"
        if _file_sha256(f) != want["sha256"]:
            return f"{f}: sha256 differs from the manifest (damaged)"
    return None


def _read_checkpoint(folder: Path) -> tuple[dict[str, Any], list[torch.Tensor], Any, Any]:
    """Everything a checkpoint holds, read (not applied); any damage raises with the file named."""
    problem = verify_checkpoint(folder)
    if problem:
        raise ValueError(problem)
    try:
        info = json.loads((folder / "cursor.json").read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not all(isinstance(info.get(k), int) for k in Cursor.__dataclass_fields__):
            raise ValueError("not a cursor object")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{folder / 'cursor.json'}: unreadable ({e})") from None
    loaded = []
    for name, weights_only in (("theta.pt", True), ("optimizer.pt", False), ("rng.pt", False)):
        try:
            loaded.append(torch.load(folder / name, weights_only=weights_only))
        except Exception as e:  # torch raises RuntimeError, EOFError, pickle errors ... for a damaged file
            raise ValueError(f"{folder / name}: unreadable ({type(e).__name__}: {e})") from None
    return info, *loaded


class Run:
    """The records of one training run. Construct only after validation passed; on non-main processes every
    write is a no-op."""

    def __init__(self, cfg: Any, is_main: bool = True, derived: dict[str, Any] | None = None) -> None:
        self.cfg, self.is_main = cfg, is_main
        self.dir: Path = cfg.run_dir
        self.cursor = Cursor()
        self._tb = None
        self._wandb = None
        self.aside: Path | None = None  # the old run an --overwrite moved aside, until the first checkpoint
        self.keep = max(int(getattr(cfg, "keep_checkpoints", 2)), 1)
        if not is_main:
            return
        if cfg.overwrite and self.dir.exists() and not cfg.resume:
            aside = _aside(self.dir)
            if aside.exists():
                shutil.rmtree(aside)
            os.replace(self.dir, aside)
            self.aside = aside
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clean_temporaries()
        if not cfg.resume:
            atomic_write_json(self.dir / INPUTS, record_inputs(cfg))
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

    def clean_temporaries(self) -> None:
        """Remove what a killed run left half-written: ``.state.XXXX``/``.model.XXXX`` folders and ``.*.tmp``
        files (never a complete checkpoint: ``state``, ``state.N`` and ``.state.old`` are kept)."""
        for p in self.dir.iterdir():
            if p.name == LEGACY_OLD or not p.name.startswith("."):
                continue
            if p.is_dir() and any(p.name.startswith(f".{n}.") for n in (STATE_DIR, MODEL_DIR, "phase1_model")):
                shutil.rmtree(p, ignore_errors=True)
            elif p.is_file() and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)

    def abort(self) -> None:
        """The new run failed before its first checkpoint: put back the run ``--overwrite`` moved aside."""
        if self.is_main and self.aside is not None and self.aside.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)
            os.replace(self.aside, self.dir)
            self.aside = None
            print(f"seer: {self.dir}: the new run stopped before its first checkpoint; the previous run was put back",
                  file=sys.stderr)

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
        """Atomically write ``state/`` (θ, optimizer, RNG states, the cursor and a manifest of their hashes); the
        previous checkpoints shift to ``state.1`` … and the oldest beyond ``keep_checkpoints`` is removed."""
        # gathered on every process (collectives when θ is sharded), written by the main one: the files are those
        # of an unsharded run, so a sharded run resumes unsharded and the other way round
        theta = [full_tensor(p).cpu() for p in backend.trainable_parameters()]
        opt_state = full_optimizer_state(optimizer)
        if not self.is_main:
            return
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=f".{STATE_DIR}."))
        try:
            torch.save(theta, tmp / "theta.pt")
            torch.save(opt_state, tmp / "optimizer.pt")
            torch.save(rng_state(), tmp / "rng.pt")
            atomic_write_json(tmp / "cursor.json", {**asdict(cursor), **(extra or {})})
            atomic_write_json(tmp / MANIFEST, {"step": cursor.step, "files": checkpoint_manifest(tmp)})
            if self.keep == 1:
                atomic_replace_dir(tmp, self.dir / STATE_DIR)
            else:
                # shift state.K-2 → state.K-1 … state → state.1; a kill between two renames leaves every checkpoint
                # whole under some name, and load_state takes the newest valid one
                shutil.rmtree(self.dir / f"{STATE_DIR}.{self.keep - 1}", ignore_errors=True)
                for i in range(self.keep - 2, 0, -1):
                    if (self.dir / f"{STATE_DIR}.{i}").is_dir():
                        os.replace(self.dir / f"{STATE_DIR}.{i}", self.dir / f"{STATE_DIR}.{i + 1}")
                if (self.dir / STATE_DIR).is_dir():
                    os.replace(self.dir / STATE_DIR, self.dir / f"{STATE_DIR}.1")
                os.replace(tmp, self.dir / STATE_DIR)
            for p in _checkpoint_names(self.dir):  # beyond keep (a smaller keep_checkpoints) and a legacy .state.old
                if p.name == LEGACY_OLD or (p.name != STATE_DIR and int(p.name.split(".")[-1]) >= self.keep):
                    shutil.rmtree(p, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if self.aside is not None:  # the new run now has a checkpoint: the old one is no longer needed
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def save_model(self, backend: Any, name: str = MODEL_DIR) -> Path:
        """Atomically write a full backend checkpoint to ``<run>/<name>/``."""
        target = self.dir / name
        train_module = getattr(backend, "train_module", None)
        # a sharded θ is gathered on every process (collective), then saved by the main one as a full checkpoint
        with full_parameters(train_module() if callable(train_module) else None):
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
    """Restore θ, optimizer and RNG states from the newest intact checkpoint of ``run_dir`` (``state``, else
    ``state.1`` …, else a ``.state.old`` a kill left); returns the cursor and its extra fields. A damaged checkpoint
    is skipped with a warning naming the file; none intact is a ConfigError listing what is wrong with each."""
    run_dir = Path(run_dir)
    candidates = []
    for folder in find_checkpoints(run_dir):
        try:
            step = json.loads((folder / "cursor.json").read_text(encoding="utf-8")).get("step", -1)
        except (ValueError, UnicodeDecodeError, AttributeError):
            step = -1
        candidates.append((step if isinstance(step, int) else -1, folder.name == STATE_DIR, folder))
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    problems = []
    for _, _, folder in candidates:
        try:
            info, theta, opt_state, rng = _read_checkpoint(folder)
        except ValueError as e:
            problems.append(str(e))
            print(f"seer: warning: checkpoint {folder} is damaged ({e}); trying an older one", file=sys.stderr)
            continue
        params = backend.trainable_parameters()
        if len(theta) != len(params) or any(a.shape != b.shape for a, b in zip(theta, params, strict=False)):
            raise ConfigError(
                f"{folder / 'theta.pt'}: holds {len(theta)} tensors that do not match the model's {len(params)} "
                "trainable parameters; resume with the same model the run started from"
            )
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                if _is_sharded(p):  # the checkpoint is full: keep this process's shard
                    p.to_local().copy_(shard_like(t, p).to_local())
                else:
                    p.copy_(t.to(p.device, p.dtype))
        optimizer.load_state_dict(_shard_optimizer_state(optimizer, opt_state))
        set_rng_state(rng)
        if problems or folder.name != STATE_DIR:
            print(f"seer: warning: resuming from {folder} (step {info['step']})", file=sys.stderr)
        cursor = Cursor(**{k: info.pop(k) for k in ("step", "phase", "epoch", "batch")})
        return cursor, info
    raise ConfigError(f"--resume: no intact checkpoint in {run_dir}: " + ("; ".join(problems) or "none found")
                      + "; start afresh with --overwrite")


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
