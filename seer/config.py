"""Typed configuration of the two SEER stages: one dataclass per stage, help text on every field.

A recipe (YAML) and ``--key value`` flags map onto :class:`RLVRConfig` or :class:`RLMTConfig`; dotted keys reach
nested blocks (``--templates.system "..."``). Every value is checked before anything runs: an unknown key is an
error listing the known keys, a wrong type is an error naming the key, the expected type and the value. The YAML a
run writes (``config.yaml``) is the fully resolved config and loads back as a recipe.

Each field's help says where its default comes from: **paper** (AdamW, β = 0.04, μ = 1, 10 epochs per stage/phase,
ε = 0.2 as standard GRPO) or **seer** (values lost from our copy of the paper — learning rates, group size — and
engineering choices). The learning rates are sized for the ~4M-parameter world model pretrained at lr 2e-3 (RL
fine-tuning one to two orders of magnitude lower); ``recipes/world/*.yaml`` hold the world's settings.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from seer.backends.base import BACKEND_FILE
from seer.cli import UserError
from seer.prompts import Templates


class ConfigError(UserError):
    """A recipe or flag the stage cannot run with; the message names the key, what was expected and the value."""


def arg(default: Any, help: str, source: str = "seer", **kw: Any) -> Any:
    """A config field with help text; ``source`` is "paper" or "seer" (whose choice the default is)."""
    meta = {"help": help, "source": source}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class StageConfig:
    """Fields shared by both stages."""

    stage: ClassVar[str] = ""

    name: str = arg("seer", "run name; the run directory is <output_dir>/<name>/<stage>/")
    output_dir: str = arg("runs", "folder holding all runs")
    backend: str | None = arg(
        None, "backend kind of the model directory (token_umm, janus); default: read from its backend.json"
    )
    dtype: str | None = arg(None, "compute dtype passed to the backend loader (float32, bfloat16); default: the "
                            "checkpoint's")
    device: str = arg("cpu", "device passed to the backend loader")
    group_size: int = arg(8, "G: completions sampled per query (Eq. 6); the paper's value was lost, 8 is seer's")
    queries_per_step: int = arg(4, "queries per optimizer step, summed over all processes")
    max_new_tokens: int = arg(64, "cap on a sampled completion's length; hitting it counts as truncation")
    temperature: float = arg(1.0, "sampling temperature of the rollouts")
    top_k: int = arg(0, "top-k filter of the rollouts (0 = off)")
    epsilon: float = arg(0.2, "ε: clip range of the token ratio (Eq. 6; the standard GRPO/PPO value)", "paper")
    beta: float = arg(0.04, "β: coefficient of the k3 KL to the reference policy (paper Sec. 4.1)", "paper")
    iterations_per_update: int = arg(1, "μ: GRPO iterations per batch of rollouts (paper: 1; only 1 is supported)",
                                     "paper")
    groups_per_forward: int = arg(0, "query groups scored per token_logprobs call in the update (0 = all of the "
                                  "step's; set 1 for big models on one GPU). Speed and memory only, same step")
    adv_eps: float = arg(1e-4, "eps added to the group std in the advantage (Eq. 8)")
    format_weight: float = arg(1.0, "weight of the format reward in R = R_acc + w · R_format (paper: w = 1)", "paper")
    weight_decay: float = arg(0.0, "AdamW weight decay (the paper uses AdamW; the decay value is seer's)")
    grad_clip: float = arg(1.0, "clip the global gradient norm to this value (0 = off)")
    seed: int = arg(0, "seed of data order, pair shuffling, rollouts and image noise")
    max_steps: int = arg(0, "stop (with a checkpoint) after this many optimizer steps in total; 0 = all epochs")
    log_every: int = arg(1, "write metrics every N optimizer steps")
    sample_every: int = arg(10, "write sample completions to samples.jsonl every N steps")
    save_every: int = arg(50, "write a resumable checkpoint every N steps (and always at phase ends)")
    templates: Templates = arg(Templates(), "prompt templates (keys: templates.system, templates.evaluator, "
                               "templates.reprompt); seer's own, the paper's App. A.3 figures were not available")
    tensorboard: bool = arg(True, "also write TensorBoard event files into the run directory")
    wandb: bool = arg(False, "also log to Weights & Biases (needs `pip install wandb`)")
    dry_run: bool = arg(False, "load config, model and data, validate everything, print a summary and exit")
    resume: bool = arg(False, "continue the run in the run directory from its last checkpoint")
    overwrite: bool = arg(False, "delete an existing run directory and start afresh")
    threads: int = arg(0, "torch intra-op threads (0 = torch's default: OMP_NUM_THREADS or every core)")
    keep_checkpoints: int = arg(2, "resumable checkpoints kept (state/, state.1/ ...): a damaged newest one falls "
                                "back to the previous")

    def __post_init__(self) -> None:
        # NaN passes every `< 0` check below, and a NaN or infinite lr/temperature/ε/β only shows up steps later as
        # a garbled completion in a half-made run folder: refuse them here, whatever built the config
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name} must be a finite number, got {v}")
        positive = ("group_size", "queries_per_step", "max_new_tokens", "log_every", "sample_every", "save_every",
                    "keep_checkpoints")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (a group of one has no relative advantage), got "
                              f"{self.group_size}")
        for key in ("temperature", "epsilon"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("beta", "weight_decay", "grad_clip", "format_weight", "adv_eps", "max_steps", "top_k",
                    "groups_per_forward", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.iterations_per_update != 1:
            raise ConfigError(f"iterations_per_update must be 1 (μ = 1, as the paper), got "
                              f"{self.iterations_per_update}")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a non-empty folder name, got {self.name!r}")

    @property
    def run_dir(self) -> Path:
        """Derived: ``<output_dir>/<name>/<stage>``."""
        return Path(self.output_dir) / self.name / self.stage


@dataclass
class RLVRConfig(StageConfig):
    """Stage 1, RLVR: activate the evaluator with a two-phase curriculum (paper Sec. 3.4.1, App. A.1.4)."""

    stage: ClassVar[str] = "rlvr"

    model: str = arg("", "the base model's checkpoint directory (a seer checkpoint, or a raw dir with --backend)")
    quadruplets: str = arg("", "quadruplets.jsonl: phase-1 (basic alignment) and phase-2 (visual instruction) pairs")
    split: str = arg("train", "which split of the quadruplets file to train on")
    lr_phase1: float = arg(1e-4, "AdamW learning rate of phase 1, basic alignment (value lost from the paper)")
    lr_phase2: float = arg(5e-5, "AdamW learning rate of phase 2, visual instruction supervision (value lost)")
    epochs_phase1: int = arg(10, "epochs over the phase-1 quadruplets (paper: 10 epochs per stage)", "paper")
    epochs_phase2: int = arg(10, "epochs over the phase-2 quadruplets (paper: 10 epochs per stage)", "paper")
    both_orders: bool = arg(False, "each group sees its pair in both orders, G/2 completions each, so a verdict that "
                            "ignores the images earns no advantage (seer's; the paper shows one seeded order)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.both_orders and self.group_size % 2:
            raise ConfigError(f"both_orders needs an even group_size (G/2 completions per order), got "
                              f"{self.group_size}")
        if not self.model:
            raise ConfigError("model is required: the base model's checkpoint directory (--model DIR)")
        if not self.quadruplets:
            raise ConfigError("quadruplets is required: the path of quadruplets.jsonl (--quadruplets FILE)")
        for key in ("lr_phase1", "lr_phase2"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("epochs_phase1", "epochs_phase2"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")


@dataclass
class RLMTConfig(StageConfig):
    """Stage 2, RLMT: train the reprompting policy against the frozen RLVR evaluator (paper Sec. 3.4.2)."""

    stage: ClassVar[str] = "rlmt"

    evaluator: str = arg("", "the RLVR run directory (runs/<name>/rlvr) or its model/ checkpoint: the frozen judge")
    init: str | None = arg(None, "the policy's starting checkpoint; default: the evaluator checkpoint, so the "
                           "RLVR-tuned model keeps evolving (the paper's self-evolving loop)")
    samples: str = arg("", "samples.jsonl: (instruction, prompt) pairs of Visual Instruction Elaboration")
    split: str = arg("train", "which split of the samples file to train on")
    lr: float = arg(5e-5, "AdamW learning rate (value lost from the paper)")
    epochs: int = arg(10, "epochs over the samples (paper: 10 epochs per stage)", "paper")
    self_judge: bool = arg(False, "let the live policy judge its own images instead of the frozen evaluator")
    judge_both_orders: bool = arg(False, "judge each pair in both orders and average the two Eq. 9 rewards")
    judge_max_new_tokens: int = arg(64, "cap on the evaluator's (greedy) verdict completion")
    share_evaluator_base: bool = arg(False, "load the evaluator as a frozen adapter on the policy's base weights "
                                     "(Janus with LoRA: one copy of the base model in memory)")
    generator: str | None = arg(None, "a checkpoint whose generator draws every training image (x_i and x0), never "
                                "trained; default: the policy's own (its shared backbone as it is being trained, "
                                "with the frozen generation parameters ϕ)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.evaluator:
            raise ConfigError("evaluator is required: the RLVR run directory (--evaluator runs/<name>/rlvr)")
        if not self.samples:
            raise ConfigError("samples is required: the path of samples.jsonl (--samples FILE)")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.judge_max_new_tokens < 1:
            raise ConfigError(f"judge_max_new_tokens must be >= 1, got {self.judge_max_new_tokens}")


def resolve_checkpoint(path: str | Path, what: str) -> Path:
    """A checkpoint directory from a run directory or the checkpoint itself: ``runs/x/rlvr`` → ``runs/x/rlvr/model``.
    Raises a ConfigError saying what was looked for."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / BACKEND_FILE).is_file():
            return candidate
    raise ConfigError(
        f"{what} {path}: not a seer checkpoint (no {BACKEND_FILE} in {path} or {path / 'model'}); "
        "expected a run directory written by `seer train` or a checkpoint written by a backend's save()"
    )


# --- parsing -------------------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def known_keys(cls: type) -> list[str]:
    """Every settable key, dotted for nested blocks."""
    keys = []
    hints = _hints(cls)
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += [f"{f.name}.{sub.name}" for sub in fields(hints[f.name])]
        else:
            keys.append(f.name)
    return keys


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if _is_optional(tp):
        return f"{_type_name(args[0])} or null"
    return getattr(tp, "__name__", str(tp))


def _is_optional(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) and type(None) in typing.get_args(tp)


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def coerce(key: str, value: Any, tp: Any, source: str) -> Any:
    """Convert ``value`` (from YAML, or a string from a flag) to ``tp``; a mismatch raises naming everything."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    bad = ConfigError(f"{source}: key {key!r} expects {_type_name(tp)}, got {shown} ({type(value).__name__})")
    if _is_optional(tp):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return coerce(key, value, inner, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            out = value
        elif isinstance(value, str):
            try:
                out = int(value)
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not -(2**63) <= out < 2**63:  # no setting needs more, and torch/numpy/SQLite overflow past it
            raise ConfigError(f"{source}: key {key!r} expects an int between -2^63 and 2^63, got {shown}")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            try:
                out = float(value)
            except OverflowError:  # an int past 1.8e308
                out = math.inf
        elif isinstance(value, str):
            try:
                out = float(value)  # YAML reads 1e-4 as a string
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):  # float("nan") and YAML's .inf parse, but no setting means them
            raise ConfigError(f"{source}: key {key!r} expects a finite float, got {shown}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise ConfigError(f"{source}: key {key!r} has unsupported type {tp}")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def parse_flags(tokens: list[str]) -> dict[str, str]:
    """``["--lr", "1e-4", "--dry-run", "--templates.system=..."]`` → ``{"lr": "1e-4", "dry_run": "true", ...}``.
    A flag with no value (followed by another flag or nothing) means true."""
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ConfigError(f"unexpected argument {tok!r}; expected --key value")
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        out[key] = value
        i += 1
    return out


def load_yaml(path: str | Path, error: type[Exception] = ConfigError) -> Any:
    """Read a YAML file; a duplicate key (which PyYAML lets silently win), a byte that is not UTF-8 or bad YAML raise
    ``error`` naming the file and line."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder; expected a YAML file")
    if not path.is_file():
        raise error(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error(f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8; save the file as UTF-8") from None

    class _Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise error(f"{path}:{line}: duplicate key {key!r} (first on line {seen[key]}); a key may appear "
                            "once")
            seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise error(f"{where}: not valid YAML ({e})") from e


def _key_lines(path: Path) -> dict[str, int]:
    """The line of every (dotted) key of a YAML mapping, so an error names ``FILE:LINE``; {} where not a mapping."""
    import yaml

    out: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                out[key] = k.start_mark.line + 1
                walk(v, f"{key}.")

    try:
        walk(yaml.compose(path.read_text(encoding="utf-8")), "")
    except (yaml.YAMLError, UnicodeDecodeError):  # load_yaml already reported these
        pass
    return out


def load_config(cls: type, path: str | Path | None = None, flags: dict[str, Any] | list[str] | None = None) -> Any:
    """Build a stage config from a YAML recipe and/or flags (flags win). Raises ConfigError before anything runs."""
    values: dict[str, tuple[Any, str]] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: recipe file not found")
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
        lines = _key_lines(path)
        values.update({k: (v, f"{path}:{lines[k]}" if k in lines else str(path)) for k, v in _flatten(data).items()})
    if isinstance(flags, list):
        flags = parse_flags(flags)
    values.update({k: (v, "command line") for k, v in (flags or {}).items()})

    known = known_keys(cls)
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, (value, source) in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown config key {key!r}; known keys: {', '.join(known)}")
        head, _, sub = key.partition(".")
        if sub:
            nested.setdefault(head, {})[sub] = coerce(key, value, _hints(hints[head])[sub], source)
        else:
            kwargs[key] = coerce(key, value, hints[key], source)
    for head, sub_values in nested.items():
        try:
            kwargs[head] = dataclasses.replace(cls.__dataclass_fields__[head].default_factory(), **sub_values)
        except ValueError as e:
            raise ConfigError(f"{head}: {e}") from e
    try:
        return cls(**kwargs)
    except TypeError as e:  # cannot happen for known keys; kept so a bad caller gets a clear message
        raise ConfigError(str(e)) from e
    except ConfigError as e:
        # a range check names its key first ("temperature must be > 0"): say where that value came from
        msg = str(e)
        key = msg.split(" ", 1)[0]
        if key in values:
            raise ConfigError(f"{values[key][1]}: {msg}") from None
        if path is not None:
            raise ConfigError(f"{path}: {msg}") from None
        raise


# how to run, not what: left out of config.yaml
RUN_CONTROL = ("dry_run", "resume", "overwrite", "max_steps", "threads", "keep_checkpoints")


def config_dict(cfg: Any, run_control: bool = True) -> dict[str, Any]:
    """The config as plain data (nested blocks as dicts), in field order; ``run_control=False`` drops
    :data:`RUN_CONTROL` keys."""
    out = {}
    for f in fields(cfg):
        if not run_control and f.name in RUN_CONTROL:
            continue
        v = getattr(cfg, f.name)
        out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
    return out


def config_yaml(cfg: Any) -> str:
    """The fully resolved config as YAML, each key preceded by its help text; loads back with :func:`load_config`."""
    import yaml

    lines = [f"# seer {cfg.stage} config, fully resolved; reload with `seer train {cfg.stage} --config <this file>`"]
    data = config_dict(cfg, run_control=False)
    for f in fields(cfg):
        if f.name not in data:
            continue
        source = "paper" if f.metadata.get("source") == "paper" else "seer"
        lines.append(f"# {f.metadata.get('help', '')} [default: {source}]")
        lines.append(yaml.safe_dump({f.name: data[f.name]}, sort_keys=False, allow_unicode=True, width=1000).rstrip())
    return "\n".join(lines) + "\n"


def describe(cls: type) -> str:
    """Every key with its type, default and help: the epilog of ``seer train <stage> --help``."""
    hints = _hints(cls)
    lines = ["config keys (YAML recipe and/or --key value; nested keys dotted, e.g. --templates.system '...'):"]
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(see templates.*)"
        source = "paper" if f.metadata.get("source") == "paper" else "seer"
        lines.append(f"  --{f.name} ({_type_name(hints[f.name])}, default {default!r}, {source}): {f.metadata['help']}")
    return "\n".join(lines)
