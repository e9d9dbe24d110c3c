"""The loop both SEER stages share: rollout → reward → group advantage → GRPO loss → optimizer step.

A stage supplies its curriculum as a list of :class:`Phase` (RLVR: basic alignment then visual instruction; RLMT:
one phase) and a ``rollouts(queries, seeds, timings) -> list[Group]`` function that samples G completions for each
query of a step in one batched call (per-query seeds make it the same as one call per query) and scores them.
:func:`train_phases` does the rest: data order, sharding over processes, the update, metrics, samples, checkpoints
and resume.

Multi-process (``accelerate launch``): each process takes every ``world``-th query of a step's batch, computes its
share of the loss (each query's group loss divided by the number of queries in the *global* batch) and backpropagates;
the gradients are then summed over processes with one all-reduce of a flat buffer. We all-reduce instead of wrapping
``train_module()`` in DDP because a step runs one backward per query group and the processes can hold different
numbers of groups (the last batch of an epoch), which DDP's per-backward synchronisation cannot express without
hangs; the sum of the per-process losses is exactly the mean over the global batch, so one process and N processes
take the same step. Per-query seeds depend on the query's position in the global batch, never on the process, so the
rollouts do not depend on the number of processes either.

Launched with an FSDP config (``recipes/accelerate/fsdp.yaml``), θ is sharded instead (:class:`Sharding`): the
gradients are reduce-scattered by FSDP, not all-reduced here, and each process keeps 1/N of θ, of its gradient and of
the optimizer state; checkpoints still hold the full θ.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from seer.backends.base import Completion, Context, SamplingParams
from seer.rl.grpo import group_advantages, grpo_loss
from seer.run import Cursor, Run, frozen_digest, load_state, seed_everything

TIME_KEYS = ("rollout", "images", "judge", "update")


@dataclass
class Group:
    """The G scored completions of one query: per completion the accuracy reward, the format reward and the total
    reward ``R = R_acc + w · R_format``; ``info`` holds per-completion details for samples.jsonl."""

    query_id: str
    context: Context
    completions: list[Completion]
    accuracy: list[float]
    format: list[float]
    reward: list[float]
    info: list[dict[str, Any]] = field(default_factory=list)
    extra_sums: dict[str, float] = field(default_factory=dict)  # stage-specific metric sums (reduced like the rest)
    contexts: list[Context] | None = None  # per-completion contexts when they differ (RLVR both_orders)

    def completion_contexts(self) -> list[Context]:
        return self.contexts if self.contexts is not None else [self.context] * len(self.completions)


@dataclass
class Phase:
    """One curriculum phase: its queries, learning rate, epochs, and what to do once it is done."""

    name: str
    queries: list[Any]
    lr: float
    epochs: int
    on_end: Callable[[Run], None] | None = None

    def batches_per_epoch(self, queries_per_step: int) -> int:
        return math.ceil(len(self.queries) / queries_per_step)


class Dist:
    """Process group facts: rank, world size, and the two collectives the loop needs. Single-process unless the
    script was started by ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1)."""

    def __init__(self, cpu: bool = True) -> None:
        self.rank, self.world = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            state = PartialState(cpu=cpu)  # cpu: gloo even where CUDA exists
            self.rank, self.world = state.process_index, state.num_processes
        # `accelerate launch` with an FSDP config (recipes/accelerate/fsdp.yaml) says so in the environment; seer
        # then shards θ itself with torch's FSDP2 (see Sharding), because accelerate enables FSDP only on
        # accelerators (it never reaches its FSDP code for CPU/gloo processes) and seer's loop needs control over
        # when θ is gathered and when gradients are reduced
        self.sharded = self.world > 1 and os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true", "yes")
        if self.sharded and os.environ.get("FSDP_VERSION", "1") != "2":
            from seer.config import ConfigError

            raise ConfigError(f"the accelerate config asks for FSDP version {os.environ.get('FSDP_VERSION', '1')}; "
                              "seer shards with FSDP2 only: set fsdp_config.fsdp_version: 2 (see "
                              "recipes/accelerate/fsdp.yaml)")
        if self.sharded and os.environ.get("FSDP_OFFLOAD_PARAMS", "").lower() == "true":
            from seer.config import ConfigError

            raise ConfigError("the accelerate config sets fsdp_config.fsdp_offload_params: true, which seer's sharding "
                              "does not implement; set it to false (recipes/accelerate/fsdp.yaml)")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients of ``params`` in one flat buffer. A parameter no process has a gradient
        for (e.g. Janus's image encoder under text-only RLMT) is left out and keeps ``grad = None`` everywhere, so it
        costs no traffic and AdamW keeps no state for it; which ones is agreed by a first, tiny all-reduce."""
        if self.world == 1:
            return
        import torch.distributed as dist

        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self._device())
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        used = [p for p, h in zip(params, has.tolist(), strict=True) if h]
        if not used:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in used]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in used:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    @staticmethod
    def _device() -> str:
        import torch.distributed as dist

        # NCCL reduces only CUDA tensors; gloo takes CPU ones
        return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"

    def sum_dict(self, sums: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over processes (every process must pass the same keys)."""
        if self.world == 1:
            return dict(sums)
        import torch.distributed as dist

        keys = sorted(sums)
        t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return dict(zip(keys, t.cpu().tolist(), strict=True))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


# backends whose θ cannot be handed to FSDP as it is, and why (checked before anything is sharded)
NOT_SHARDABLE = {
    "token_umm": "its ϕ (the image-token rows of the embedding and output matrices) lives inside θ's tensors, which "
                 "FSDP would shard; the backend keeps references to the unsharded tensors to restore ϕ",
    "janus": "its train module also holds the frozen generator ϕ (which FSDP would shard) and its image generation "
             "and reference paths have not been run on a sharded model",
}


class Sharding:
    """θ sharded over the processes with torch's FSDP2 (``fully_shard``): between steps each process holds 1/N of
    θ, of its gradient and of AdamW's state (the optimizer is built over the shards).

    A step gathers θ once at its start (:meth:`step`: one all-gather per FSDP unit) and keeps it gathered until the
    optimizer step, so the rollouts' decode loops — which stop early per process and differ in length — and the
    update's forwards make no collective calls and need not run in lockstep. The only collectives of a step are that
    all-gather, the gradients' reduce-scatter at the end of the last backward (every earlier backward accumulates
    locally: ``set_requires_gradient_sync(False)``), the gradient norm and the reshard; every process reaches each
    of them because each runs at least one backward (``train_phases`` gives a process without a query a padding
    query of weight 0). Peak memory is one full θ plus the shards (as DeepSpeed ZeRO-3 gathers θ for generation);
    what is saved is the gradient and the optimizer state (16 bytes per θ parameter in float32 AdamW, 1/N of it per
    process). The frozen reference model and ϕ are not sharded: each process keeps its own copy."""

    def __init__(self, backend: Any, dist: Dist, device: str) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        from seer.config import ConfigError

        kind = getattr(backend, "kind", type(backend).__name__)
        if kind in NOT_SHARDABLE:
            raise ConfigError(f"launched with an FSDP accelerate config, but the {kind} backend cannot be sharded yet: "
                              f"{NOT_SHARDABLE[kind]}. Use recipes/accelerate/gpu_ddp.yaml (data parallel) or LoRA; "
                              "see docs/own_model.md, 'Sharding θ (FSDP)'")
        module = backend.train_module()
        mesh = init_device_mesh(torch.device(device).type, (dist.world,))
        # one FSDP unit per transformer block (HF models name them in _no_split_modules; accelerate's
        # fsdp_transformer_layer_cls_to_wrap adds names), then the rest of the module as the root unit
        names = set(getattr(module, "_no_split_modules", None) or [])
        names |= {n.strip() for n in os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if n.strip()}
        for sub in reversed(list(module.modules())):
            if sub is not module and type(sub).__name__ in names and not isinstance(sub, FSDPModule):
                fully_shard(sub, mesh=mesh)
        fully_shard(module, mesh=mesh)
        self.module = module
        self.units = [m for m in module.modules() if isinstance(m, FSDPModule)]
        self.world = dist.world
        backend.use_train_module(module)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """θ gathered for the block (rollouts and update); resharded after it."""
        for unit in self.units:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.set_reshard_after_backward(False, recurse=False)
            unit.unshard()
        try:
            yield
        finally:
            for unit in self.units:
                unit.set_reshard_after_forward(True, recurse=False)
                unit.set_reshard_after_backward(True, recurse=False)
                unit.set_requires_gradient_sync(True, recurse=False)
                unit.reshard()

    def sync_gradients(self, sync: bool) -> None:
        """Whether the next backward reduce-scatters the gradients (the last of a step) or accumulates locally."""
        for unit in self.units:
            unit.set_requires_gradient_sync(sync, recurse=False)

    def local_fraction(self) -> float:
        """The fraction of θ's elements this process holds."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        return sum(p.to_local().numel() for p in params) / max(sum(p.numel() for p in params), 1)


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - t0


def derive_seed(*entropy: int) -> int:
    """A 31-bit seed from integers (run seed, phase, epoch, query position, ...), stable across machines."""
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0] & 0x7FFFFFFF)


def sampling_params(cfg: Any) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k)


def expected_image_size(backend: Any) -> tuple[int, int] | None:
    """(H, W) the backend's image tokenizer needs, when it says so."""
    size = getattr(backend, "image_size", None)
    if size is None:
        size = getattr(getattr(backend, "image_tokenizer", None), "image_size", None)
    return tuple(size) if size is not None else None


def check_contexts(backend: Any, contexts: list[tuple[str, Context]], max_new_tokens: int) -> dict[str, Any]:
    """Encode every (where, context) with the backend when it can (``encode_context``), so an image of the wrong
    shape or a context that leaves no room for ``max_new_tokens`` fails before training; returns unknown-token
    counts."""
    check_request = getattr(backend, "check_request", None)  # Janus: images per context and text budget
    if check_request is not None and contexts:
        check_request(max(len(c.images) for _, c in contexts), max_new_tokens)
    encode = getattr(backend, "encode_context", None)
    if encode is None:
        return {"checked": False}
    unk = getattr(backend, "unk_id", None)
    # positions left for the completion (token UMM: check_length; Janus keeps it private)
    check_length = getattr(backend, "check_length", None) or getattr(backend, "_check_length", None)
    unknown, longest, first_unknown = 0, 0, None
    for where, ctx in contexts:
        ids = encode(ctx, where)
        longest = max(longest, len(ids))
        n_unk = sum(1 for i in ids if i == unk) if unk is not None else 0
        unknown += n_unk
        if n_unk and first_unknown is None:
            first_unknown = where
        if check_length is not None:
            check_length(len(ids) + max_new_tokens, f"{where} plus max_new_tokens")
    if unknown:
        print(f"seer: warning: {unknown} context token(s) are unknown to the model's tokenizer (first in "
              f"{first_unknown}); check the templates and the data's words", file=sys.stderr)
    return {"checked": True, "unknown_tokens": unknown, "longest_context": longest}


def describe_backend(backend: Any) -> dict[str, Any]:
    """The backend's own summary (sizes, θ/ϕ counts) when it offers one, for the dry-run and meta.json."""
    for name in ("describe", "model_summary"):
        fn = getattr(backend, name, None)
        if callable(fn):
            return fn()
    return {"kind": getattr(backend, "kind", type(backend).__name__),
            "theta_params": sum(p.numel() for p in backend.trainable_parameters())}


def make_optimizer(backend: Any, cfg: Any, lr: float) -> torch.optim.Optimizer:
    """AdamW (paper Sec. 4.1) over θ only."""
    return torch.optim.AdamW(backend.trainable_parameters(), lr=lr, weight_decay=cfg.weight_decay)


def grpo_update(
    backend: Any, optimizer: torch.optim.Optimizer, groups: list[Group], cfg: Any, dist: Dist, n_global: int,
    sharding: Sharding | None = None, weight: float = 1.0,
) -> dict[str, float]:
    """One GRPO step (μ = 1) over this process's groups; returns metric sums (to be summed over processes).

    The groups are scored ``cfg.groups_per_forward`` at a time (0 = all in one ``token_logprobs`` call: on a CPU,
    one forward of 64 rows costs little more than one of 8); each group's loss is its own (Eq. 6 over its G
    completions, divided by the global number of queries), so the chunking changes speed, never the step."""
    # the optimizer's parameters: with sharding, the shards (trainable_parameters() names the gathered tensors
    # while θ is gathered, and the reduced gradients land on the shards)
    params = [p for g in optimizer.param_groups for p in g["params"]] if sharding else backend.trainable_parameters()
    optimizer.zero_grad(set_to_none=True)
    # FSDP averages the reduced gradients over the processes; the losses here are already shares of the global mean
    scale = weight * (dist.world if sharding else 1)
    sums: dict[str, float] = defaultdict(float)
    per_forward = cfg.groups_per_forward or max(len(groups), 1)
    for start in range(0, len(groups), per_forward):
        chunk = groups[start : start + per_forward]
        ids = [c.token_ids for g in chunk for c in g.completions]
        contexts = [c for g in chunk for c in g.completion_contexts()]
        logp, mask = backend.token_logprobs(contexts, ids)  # (ΣG, T), grad through θ
        with torch.no_grad():
            ref_logp, _ = backend.token_logprobs(contexts, ids, reference=True)
        ref_logp, mask = ref_logp.to(logp), mask.to(logp)
        total = logp.new_zeros(())
        row = 0
        for g in chunk:
            rows = slice(row, row + len(g.completions))
            row = rows.stop
            adv = group_advantages(torch.tensor([g.reward]), cfg.adv_eps)[0].to(logp.device)  # Eq. 8, (G,)
            loss, stats = grpo_loss(logp[rows], logp[rows].detach(), ref_logp[rows], adv, mask[rows], cfg.epsilon,
                                    cfg.beta)
            total = total + loss / n_global  # summed over groups and processes = mean over the global batch
            sums["loss"] += stats.loss / n_global
            sums["kl_sum"] += stats.kl
            sums["clip_tokens"] += stats.clip_fraction * stats.tokens
            sums["tokens"] += stats.tokens
        if sharding is not None:
            sharding.sync_gradients(start + per_forward >= len(groups))  # reduce-scatter once, after the last
        (total * scale).backward()
    if sharding is None:
        dist.sum_grads(params)
    if sharding is not None:  # the norm of the sharded gradient (a collective): the unclipped one when grad_clip 0
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    elif cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    optimizer.step()
    backend.after_optimizer_step()
    optimizer.zero_grad(set_to_none=True)
    sums["grad_norm"] = float(norm) / dist.world  # identical on every process after the all-reduce
    return sums


def group_sums(groups: list[Group]) -> dict[str, float]:
    """Metric sums over this process's groups."""
    s: dict[str, float] = defaultdict(float)
    for g in groups:
        r = torch.tensor(g.reward, dtype=torch.float64)
        std = float(r.std(unbiased=False))
        s["queries"] += 1
        s["completions"] += len(g.reward)
        s["reward_sum"] += float(r.sum())
        s["accuracy_sum"] += sum(g.accuracy)
        s["format_sum"] += sum(g.format)
        s["group_std_sum"] += std
        s["zero_spread"] += float(std == 0.0)
        s["truncated"] += sum(c.truncated for c in g.completions)
        s["length_sum"] += sum(len(c.token_ids) for c in g.completions)
        for k, v in g.extra_sums.items():
            s[k] += v
    return s


def step_metrics(s: dict[str, float], timings: dict[str, float], world: int, lr: float, phase: int,
                 epoch: int, extra_keys: dict[str, str]) -> dict[str, Any]:
    """Turn summed counters into the per-step metrics of the run's metrics.jsonl."""
    n, q = max(s["completions"], 1), max(s["queries"], 1)
    wall = sum(timings[k] for k in TIME_KEYS) / world
    m = {
        "phase": phase + 1,
        "epoch": epoch,
        "lr": lr,
        "reward_mean": s["reward_sum"] / n,
        "accuracy_reward_mean": s["accuracy_sum"] / n,
        "format_reward_mean": s["format_sum"] / n,
        "format_failure_rate": 1 - s["format_sum"] / n,
        "group_std_mean": s["group_std_sum"] / q,
        "zero_spread_fraction": s["zero_spread"] / q,
        "truncation_rate": s["truncated"] / n,
        "completion_length_mean": s["length_sum"] / n,
        "kl": s["kl_sum"] / q,
        "clip_fraction": s["clip_tokens"] / max(s["tokens"], 1),
        "loss": s["loss"],
        "grad_norm": s["grad_norm"],
        "queries": int(s["queries"]),
    }
    for key, denominator in extra_keys.items():  # stage metrics: name -> which counter divides it
        m[key] = s[key] / max(s[denominator], 1)
    for k in TIME_KEYS:
        m[f"time_{k}"] = timings[k] / world
    m["samples_per_s"] = s["completions"] / wall if wall > 0 else 0.0
    return m


def _advance(cursor: Cursor, phase: Phase, queries_per_step: int) -> Cursor:
    c = Cursor(cursor.step + 1, cursor.phase, cursor.epoch, cursor.batch + 1)
    if c.batch >= phase.batches_per_epoch(queries_per_step):
        c.epoch, c.batch = c.epoch + 1, 0
    return c


def train_phases(
    cfg: Any,
    backend: Any,
    optimizer: torch.optim.Optimizer,
    phases: list[Phase],
    rollouts: Callable[[list[Any], list[int], dict[str, float]], list[Group]],
    run: Run,
    dist: Dist,
    cursor: Cursor,
    extra_metrics: dict[str, str] | None = None,
    sharding: Sharding | None = None,
) -> Cursor:
    """Run the curriculum from ``cursor`` to the end (or to ``cfg.max_steps``), checkpointing as configured.
    Returns the final cursor."""
    extra_metrics = extra_metrics or {}
    Q = cfg.queries_per_step
    frozen_at_start = frozen_digest(backend.frozen_state())
    total = sum(p.batches_per_epoch(Q) * p.epochs for p in phases)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    bar = tqdm(total=total, initial=min(cursor.step, total), desc=f"seer {cfg.stage}", disable=not dist.is_main,
               dynamic_ncols=True)

    def checkpoint(c: Cursor) -> None:
        if frozen_digest(backend.frozen_state()) != frozen_at_start:
            raise RuntimeError("the generation parameters ϕ changed during training; they must stay frozen")
        run.save_state(backend, optimizer, c)
        dist.barrier()

    while cursor.phase < len(phases):
        phase = phases[cursor.phase]
        if cursor.epoch >= phase.epochs or not phase.queries:
            if phase.on_end is not None:
                phase.on_end(run)
            cursor = Cursor(cursor.step, cursor.phase + 1, 0, 0)
            checkpoint(cursor)
            continue
        if cfg.max_steps and cursor.step >= cfg.max_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = phase.lr
        order = np.random.default_rng([cfg.seed, cursor.phase, cursor.epoch]).permutation(len(phase.queries))
        batch = order[cursor.batch * Q : (cursor.batch + 1) * Q]
        timings: dict[str, float] = defaultdict(float)
        shard = list(range(dist.rank, len(batch), dist.world))  # this process's share of the batch
        # sharded θ: every process must reach the step's gradient reduce-scatter with a backward of its own, so one
        # left without a query (a batch smaller than the process count) takes a padding query of weight 0, which
        # changes neither the step nor the metrics
        padding = sharding is not None and not shard
        if padding:
            shard = [dist.rank % len(batch)]
        seeds = [derive_seed(cfg.seed, cursor.phase, cursor.epoch, cursor.batch * Q + pos) for pos in shard]
        with sharding.step() if sharding is not None else contextlib.nullcontext():
            groups = rollouts([phase.queries[batch[pos]] for pos in shard], seeds, timings) if seeds else []
            with timed(timings, "update"):
                sums = grpo_update(backend, optimizer, groups, cfg, dist, n_global=len(batch), sharding=sharding,
                                   weight=0.0 if padding else 1.0)
        if padding:
            sums, groups = defaultdict(float, grad_norm=sums["grad_norm"]), []
        sums.update(group_sums(groups))
        for k in TIME_KEYS:
            sums[f"time_{k}"] = timings[k]
        sums = dist.sum_dict({k: sums.get(k, 0.0) for k in _metric_keys(extra_metrics)})
        timings = {k: sums.pop(f"time_{k}") for k in TIME_KEYS}
        epoch_before = cursor.epoch
        cursor = _advance(cursor, phase, Q)
        if cursor.step % cfg.log_every == 0:
            run.log_metrics(cursor.step, step_metrics(sums, timings, dist.world, phase.lr, cursor.phase,
                                                      epoch_before, extra_metrics))
        if cursor.step % cfg.sample_every == 0 and groups:
            run.log_samples(cursor.step, sample_records(groups[0]))
        bar.update(1)
        bar.set_postfix(phase=cursor.phase + 1, reward=f"{sums['reward_sum'] / max(sums['completions'], 1):.3f}")
        if cursor.step % cfg.save_every == 0 or (cfg.max_steps and cursor.step >= cfg.max_steps):
            checkpoint(cursor)
    bar.close()
    return cursor


def _metric_keys(extra: dict[str, str]) -> list[str]:
    keys = ["loss", "kl_sum", "clip_tokens", "tokens", "grad_norm", "queries", "completions", "reward_sum",
            "accuracy_sum", "format_sum", "group_std_sum", "zero_spread", "truncated", "length_sum"]
    keys += [f"time_{k}" for k in TIME_KEYS]
    keys += [k for pair in extra.items() for k in pair]
    return sorted(set(keys))


def sample_records(group: Group) -> list[dict[str, Any]]:
    """One record per completion of a group, for samples.jsonl."""
    out = []
    for i, c in enumerate(group.completions):
        rec = {"query_id": group.query_id, "completion": c.text, "reward": group.reward[i],
               "accuracy": group.accuracy[i], "format": group.format[i], "truncated": c.truncated}
        if i < len(group.info):
            rec.update(group.info[i])
        out.append(rec)
    return out


_CONFIG_KIND = object()


def open_model(path: str, cfg: Any, what: str, kind: Any = _CONFIG_KIND, **loader_kwargs: Any) -> Any:
    """Load a backend from ``path`` with the config's backend kind (unless ``kind`` is given; None = read it from
    backend.json), dtype and device. Errors name the config key ``what``."""
    from seer.backends.base import BackendError, load_backend

    kwargs = {"device": cfg.device, **loader_kwargs}
    if cfg.dtype is not None:
        kwargs["dtype"] = cfg.dtype
    try:
        return load_backend(path, kind=cfg.backend if kind is _CONFIG_KIND else kind, **kwargs)
    except BackendError as e:
        raise BackendError(f"{what}: {e}") from e


def print_summary(title: str, summary: dict[str, Any]) -> None:
    import json

    print(f"{title}\n{json.dumps(summary, indent=2, default=str)}")


def run_stage(
    cfg: Any,
    backend: Any,
    dist: Dist,
    phases: list[Phase],
    rollouts: Callable[[list[Any], list[int], dict[str, float]], list[Group]],
    summary: dict[str, Any],
    extra_metrics: dict[str, str] | None = None,
) -> Path:
    """After a stage has validated its config, model and data: print the summary and stop (``dry_run``), or open
    the run directory, restore a checkpoint (``resume``), train every phase and write ``<run>/model/``."""
    if cfg.dry_run:
        if dist.is_main:
            print_summary(f"seer train {cfg.stage} --dry-run: everything validated; nothing was written", summary)
        return cfg.run_dir
    dist.barrier()  # every process has checked the run directory before the main one creates or clears it
    seed_everything(cfg.seed)
    run = Run(cfg, dist.is_main, derived=summary)
    dist.barrier()  # the main process has cleaned the run directory before any process reads a checkpoint
    try:
        # θ is sharded before the optimizer is built, so AdamW's state is made for (and holds) the shards only
        sharding = Sharding(backend, dist, cfg.device) if dist.sharded else None
        optimizer = make_optimizer(backend, cfg, phases[0].lr)
        cursor = Cursor()
        if cfg.resume:
            cursor, _ = load_state(cfg.run_dir, backend, optimizer)
        run.open_writers(purge_after=cursor.step)
        train_phases(cfg, backend, optimizer, phases, rollouts, run, dist, cursor, extra_metrics, sharding)
        run.save_model(backend)
    except BaseException:
        run.close()
        run.abort()  # before the first checkpoint an --overwrite puts the previous run back
        raise
    finally:
        run.close()
    dist.barrier()
    return cfg.run_dir
