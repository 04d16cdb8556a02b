"""The ``memlog`` Typer app: registers every command module's commands and maps errors to exit codes.

Exit codes: 0 success; 1 user error (one line on stderr naming the problem and the fix);
2 integrity problem (corrupted delta, model mismatch, locked store).
"""

from __future__ import annotations

import sys

import click
import typer
from typer._click import exceptions as typer_exceptions

from memlog.cli import (
    analytics_cmds,
    consolidate_cmds,
    demo_cmds,
    eval_cmds,
    experiment_cmds,
    replay_cmds,
    serve_cmds,
    sleep_cmds,
    store_cmds,
    wake_cmds,
)
from memlog.errors import MemlogError

app = typer.Typer(
    name="memlog",
    help="Lifelong memory in a language model's own weights: MEMIT wake, null-space sleep, an event-sourced log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Each command module imports at its top only what starts fast (typer, rich, msgspec, the event
# types, the folds); what loads torch, DuckDB, Zarr or matplotlib it imports inside the command
# that needs it, so that `memlog --help` starts in a fraction of a second.
COMMAND_MODULES = (store_cmds, wake_cmds, sleep_cmds, replay_cmds, analytics_cmds, experiment_cmds, demo_cmds, serve_cmds, eval_cmds, consolidate_cmds)
for _module in COMMAND_MODULES:
    _module.register(app)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_message(exc) -> str:
    """A usage error (click's or typer's copy) as one line with the command to ask for help."""
    message = _one_line(exc.format_message())
    if " " in (getattr(exc, "option_name", "") or "").strip():
        message += "; to pass an argument that starts with '-', put `--` before it"
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message


def _os_message(exc: OSError) -> str:
    what = exc.strerror or exc.__class__.__name__
    where = f": {exc.filename}" if exc.filename else ""
    return _one_line(f"{what}{where}; check that the path exists, is the kind of file expected and is writable")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 success, 1 user error, 2 integrity problem.

    Every failure prints one line on stderr; usage errors (click's and typer's own copies of
    click's exceptions) and operating-system errors are user errors, never tracebacks.
    """
    try:
        # Without standalone mode click returns typer.Exit's code instead of raising it.
        result = app(args=argv, prog_name="memlog", standalone_mode=False)
    except MemlogError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (click.exceptions.Exit, typer.Exit) as exc:
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 1
    except (click.exceptions.NoArgsIsHelpError, typer_exceptions.NoArgsIsHelpError) as exc:
        print(exc.format_message())
        return 0
    except (click.UsageError, typer_exceptions.UsageError) as exc:
        print(f"error: {_usage_message(exc)}", file=sys.stderr)
        return 1
    except (click.ClickException, typer_exceptions.ClickException) as exc:
        print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)
        return 1
    except UnicodeError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {_os_message(exc)}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
