"""The ``seer`` command line. Each part of the package registers its own subcommands, so the tree reads
data → training stages → evaluation → report, and no module here knows another's flags.

Subcommand modules expose ``register(subparsers)``; each parser sets ``func`` to a callable taking the parsed
namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it adds) in pipeline order
_COMMAND_MODULES = (
    "seer.world.cli",  # seer world pretrain | build-data | show
    "seer.stages.cli",  # seer train rlvr | rlmt, seer reprompt, seer generate
    "seer.eval.cli",  # seer eval ..., seer reproduce
    "seer.annotate.cli",  # seer annotate create | serve | results
)


class UserError(Exception):
    """An error the user can fix (bad config, bad data, missing checkpoint): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seer",
        description="SEER: Self-Evolving Evaluator and Reprompter for unified multimodal models (arXiv 2601.20305).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that part of seer is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from seer.backends.base import BackendError
    from seer.data import DataError

    try:
        return int(args.func(args) or 0)
    except (UserError, DataError, BackendError) as e:
        print(f"seer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seer: interrupted; completed checkpoints are kept, rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
