"""How commands are shown to members: the `help` command, a command's description, usage errors."""

from __future__ import annotations

from collections.abc import Sequence

from core.commands import (
    LIST_SEPARATOR,
    ArgKind,
    CommandSpec,
    Invocation,
    UsageError,
    command_groups,
    find_spec,
)
from core.context import Context, Handler, PrivateContext, PrivateHandler
from core.events import Reply


def visible_on(specs: Sequence[CommandSpec], platform: str) -> list[CommandSpec]:
    """The commands a platform offers: some are declared for certain platforms only."""
    return [s for s in specs if not s.platforms or platform in s.platforms]


class Help:
    """`help` lists the commands of the member's platform; `help <command>` describes one or a group."""

    def __init__(self, specs: Sequence[CommandSpec]) -> None:
        self.specs = tuple(specs)

    def handlers(self) -> dict[tuple[str, ...], Handler]:
        return {("help",): self._help}

    def private_handlers(self) -> dict[tuple[str, ...], PrivateHandler]:
        """Help in a direct message: it needs no group."""
        return {("help",): self._help}

    async def _help(self, ctx: Context | PrivateContext, inv: Invocation) -> Reply:
        specs = visible_on(self.specs, ctx.chat.platform)
        structured = ctx.event.options is not None
        wanted = inv.text("command").removeprefix(ctx.prefix.strip()).strip()
        if not wanted:
            lines = ["Peerbot commands (★ facilitators only):"]
            for s in specs:
                star = " ★" if s.facilitator_only else ""
                lines.append(f"{s.usage(ctx.prefix, structured=structured)} — {s.summary}{star}")
            lines.append(f"Say {ctx.prefix}help <command> for details.")
            return Reply("\n".join(lines))
        words = wanted.split()
        spec = find_spec(specs, words)
        if spec is None or len(spec.path) < len(words):
            group = command_groups(specs).get(words[0].casefold())
            if group is None or len(words) > 1:
                raise UsageError(
                    f"No command '{wanted[:40]}'. Say {ctx.prefix}help for the list.",
                    inv.spec,
                )
            lines = [f"{s.usage(ctx.prefix, structured=structured)} — {s.summary}" for s in group]
            lines += [s.details for s in group if s.details]
            return Reply("\n".join(lines))
        return Reply(describe(spec, ctx.prefix, structured=structured))


def describe(spec: CommandSpec, prefix: str, *, structured: bool = False) -> str:
    """Help for one command, in the form members use here (typed, or structured options)."""
    lines = [f"Usage: {spec.usage(prefix, structured=structured)}", spec.summary]
    for arg in spec.args:
        name = arg.name
        if arg.kind is ArgKind.LIST:
            names = arg.option_names()
            name = f"{names[0]} … {names[-1]}" if structured else name
            optional = f", {arg.min_count} to {arg.max_count}" + (
                "" if structured else f", separated by {LIST_SEPARATOR}"
            )
        else:
            name = f"--{name}" if arg.by_name and not structured else name
            optional = "" if arg.required or arg.kind is ArgKind.FLAG else ", optional"
        extra = f" (one of: {', '.join(arg.choices)})" if arg.kind is ArgKind.CHOICE else ""
        lines.append(f"  {name}: {arg.help}{extra}{optional}")
    if spec.details:
        lines.append(spec.details)
    if spec.example and not structured:
        lines.append(f"Example: {prefix}{spec.example}")
    if who := spec.who_may():
        lines.append(who)
    return "\n".join(lines)


def usage_reply(error: UsageError, prefix: str, structured: bool = False) -> Reply:
    """The error and the usage line, in the form the member used (typed, or structured options)."""
    text = error.message
    if error.spec is not None:
        text += f"\nUsage: {error.spec.usage(prefix, structured=structured)}"
    return Reply(text, is_error=True)
