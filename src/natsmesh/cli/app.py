"""The `natsmesh` group, and how it turns user-caused errors into one line and a non-zero exit."""

from __future__ import annotations

from typing import Any

import click

from natsmesh.errors import NatsmeshError


def say(text: str, err: bool = False, fg: str | None = None) -> None:
    """An error's text as it may reach a terminal (it can quote spec text or a server's answer)."""
    from natsmesh.model.units import visible

    click.secho(visible(text), err=err, fg=fg)


class NatsmeshGroup(click.Group):
    """Turns user-caused errors into one clear message and a non-zero exit, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NatsmeshError as exc:
            say(f"error: {exc}", fg="red", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if not type(exc).__module__.startswith("nats."):
                raise
            # What the broker answered (or did not) in a case natsmesh has no clearer message for.
            say(f"error: {broker_said(exc)}", fg="red", err=True)
            ctx.exit(1)


def broker_said(exc: Exception) -> str:
    """A nats-py error as a sentence: what did not answer, and what to check."""
    import nats.errors

    if isinstance(exc, nats.errors.TimeoutError):
        return "the mesh did not answer in time (nats: timeout); is it up and ready? (`natsmesh status`)"
    if isinstance(exc, nats.errors.NoRespondersError):
        return "no server answered (nats: no responders); is the stream or service there? (`natsmesh status`)"
    return f"the broker said: {exc or type(exc).__name__}"


@click.group(cls=NatsmeshGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="natsmesh")
@click.option(
    "--bundle",
    "folder",
    type=click.Path(file_okay=False),
    envvar="NATSMESH_BUNDLE",
    default=None,
    help="Act from one party's folder (as `render --for PARTY` wrote it) with only its keys, instead of a "
    "spec and the platform's secrets: pub, tail, catalog, report lag, lineage and policy show, for that "
    "party's own products and copies. Also $NATSMESH_BUNDLE.",
)
@click.pass_context
def cli(ctx: click.Context, folder: str | None) -> None:
    """natsmesh: a NATS/JetStream hub & spoke leafnode mesh from one spec file.

    A hub cluster, one leaf cluster (its own JetStream domain) per team: `natsmesh up` runs it on this
    machine, `natsmesh render` writes the configs that run it anywhere, `natsmesh report` shows it.
    """
    ctx.obj = folder


@cli.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show natsmesh's help, or a command's (`natsmesh help report lag`)."""
    group: click.Command = cli
    context = ctx.parent or ctx
    for name in command:
        sub = group.get_command(context, name) if isinstance(group, click.Group) else None
        if sub is None:
            raise click.UsageError(f"no such command: {' '.join(command)}")
        context = click.Context(sub, info_name=name, parent=context)
        group = sub
    click.echo(group.get_help(context))
