"""The ``memlog`` Typer app: registers every command and maps errors to exit codes.

Exit codes: 0 success; 1 user error (one line on stderr naming the problem and the fix);
2 integrity problem (corrupted delta, model mismatch, locked store).
"""

from __future__ import annotations

import sys

import click
import typer

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
    for optional in ("analytics_cmds", "experiment_cmds", "demo_cmds", "eval_cmds"):
        try:
            module = __import__(f"memlog.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"memlog.cli.{optional}":
                raise
            continue
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns typer.Exit's code instead of raising it.
        result = app(args=argv, standalone_mode=False)
    except MemlogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
