"""The ``memlog`` Typer app: registers every command and maps errors to exit codes.

Exit codes: 0 success; 1 user error (one line on stderr naming the problem and the fix);
2 integrity problem (corrupted delta, model mismatch, locked store).
"""

from __future__ import annotations

import sys

import click
import typer
from typer._click import exceptions as typer_exceptions

from memlog.errors import MemlogError

app = typer.Typer(
    name="memlog",
    help="Lifelong memory in a language model's own weights: MEMIT wake, null-space sleep, an event-sourced log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from memlog.cli import store_cmds, wake_cmds, sleep_cmds, replay_cmds

    for module in (store_cmds, wake_cmds, sleep_cmds, replay_cmds):
        module.register(app)
    for optional in ("analytics_cmds", "experiment_cmds", "demo_cmds", "serve_cmds", "eval_cmds"):
        try:
            module = __import__(f"memlog.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"memlog.cli.{optional}":
                raise
            continue
        module.register(app)


_register()


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
