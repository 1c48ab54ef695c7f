"""`greenwise-mc`: move ML services across an edge / fog / cloud continuum.

With no kubeconfig everything runs on the simulated continuum built from a scenario
(`paper` by default: the GreenWise paper's testbed).

Example: greenwise-mc run --strategy greedy --ticks 96"""

from __future__ import annotations

import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, NoReturn

import typer

from orchestrator.cli import clusters, evaluate, migrate, plan, power_model, run, status, train
from orchestrator.cli.common import Activity
from orchestrator.errors import GreenwiseError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, help=__doc__)
for command in (train.train, evaluate.evaluate, run.run, plan.plan, migrate.migrate,
                clusters.clusters, status.status):
    app.command()(command)
app.add_typer(power_model.app, name="power-model")


class _Debug:
    on = False


def _version(given: bool) -> None:
    if given:
        try:
            typer.echo(f"greenwise-mc {version('greenwise-mc')}")
        except PackageNotFoundError:  # run from a checkout that is not installed
            typer.echo("greenwise-mc (not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="GREENWISE_DEBUG",
        help="On an error, also print its traceback (give it before the command).")] = False,
    _show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] =
        False,
) -> None:
    _Debug.on = debug


def _fail(message: str, code: int) -> NoReturn:
    """The one line an error gets: plain text (never markup), on stderr."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.exit(code)


def main() -> None:
    """The error boundary: a GreenwiseError is one line and its exit code (bad input 2, an
    operational failure 1), a usage error 2, Ctrl-C 130, anything else an internal error, 1."""
    try:
        code = app(args=sys.argv[1:] or ["--help"], prog_name="greenwise-mc",
                   standalone_mode=False)
    except GreenwiseError as e:
        if _Debug.on:
            traceback.print_exc()
        _fail(str(e), e.exit_code)
    except typer.Abort:  # end of input at a prompt
        code = 130
    except typer.TyperException as e:  # usage: unknown option, bad value, missing argument
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path} --help" if ctx else "greenwise-mc --help"
        _fail(f"{e.format_message()} (see {where})", getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        code = 130
    except Exception as e:
        if _Debug.on:
            traceback.print_exc()
        _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", 1)
    if code == 130:
        _fail(f"interrupted (Ctrl-C) while {Activity.now}", 130)
    if isinstance(code, int) and code:
        sys.exit(code)
