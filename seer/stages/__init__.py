"""The two SEER stages, each a module with ``train(config) -> run_dir``:

* :mod:`seer.stages.rlvr` — stage 1, RLVR: activate the evaluator with a two-phase curriculum;
* :mod:`seer.stages.rlmt` — stage 2, RLMT: train the reprompting policy against the frozen RLVR evaluator;
* :mod:`seer.stages.common` — the loop they share (rollout → reward → advantage → loss → step, checkpoints);
* :mod:`seer.stages.cli` — ``seer train rlvr|rlmt``, ``seer reprompt``, ``seer generate``.
"""
