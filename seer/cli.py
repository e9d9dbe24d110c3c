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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop): raised where the process is, like Ctrl-C, so every cleanup that runs
    on an interrupt (temporary folders, the run an --overwrite moved aside) runs on it too."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import os
    import signal
    import threading

    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also SEER_DEBUG=1)")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from seer.backends.base import BackendError
    from seer.data import DataError

    def debug() -> bool:  # read late: `seer train` takes --debug among its config tokens and sets SEER_DEBUG
        return args.debug or os.environ.get("SEER_DEBUG", "") not in ("", "0")

    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except (UserError, DataError, BackendError) as e:
        if debug():
            raise
        print(f"seer: error: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeError) as e:  # a file or folder the user named: unreadable, a folder, full disk ...
        if debug():
            raise
        print(f"seer: error: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 2
    except Terminated:
        print("seer: terminated (SIGTERM); completed checkpoints are kept, rerun with --resume to continue",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("seer: interrupted; completed checkpoints are kept, rerun with --resume to continue", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
