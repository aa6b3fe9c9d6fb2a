"""How commands are shown to members: the `help` command, a command's description, usage errors."""

from __future__ import annotations

from collections.abc import Sequence

from core.commands import ArgKind, CommandSpec, Invocation, UsageError, command_groups, find_spec
from core.context import Context, Handler
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

    async def _help(self, ctx: Context, inv: Invocation) -> Reply:
        specs = visible_on(self.specs, ctx.chat.platform)
        wanted = inv.text("command").removeprefix(ctx.prefix.strip()).strip()
        if not wanted:
            lines = ["Peerbot commands (★ facilitators only):"]
            lines += [
                f"{s.usage(ctx.prefix)} — {s.summary}{' ★' if s.facilitator_only else ''}" for s in specs
            ]
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
            lines = [f"{s.usage(ctx.prefix)} — {s.summary}" for s in group]
            lines += [s.details for s in group if s.details]
            return Reply("\n".join(lines))
        return Reply(describe(spec, ctx.prefix))


def describe(spec: CommandSpec, prefix: str) -> str:
    lines = [f"Usage: {spec.usage(prefix)}", spec.summary]
    for arg in spec.args:
        extra = f" (one of: {', '.join(arg.choices)})" if arg.kind is ArgKind.CHOICE else ""
        optional = "" if arg.required else ", optional"
        lines.append(f"  {arg.name}: {arg.help}{extra}{optional}")
    if spec.details:
        lines.append(spec.details)
    if spec.facilitator_only:
        lines.append("Facilitators only.")
    return "\n".join(lines)


def usage_reply(error: UsageError, prefix: str) -> Reply:
    """The answer to bad input: what was wrong, and the command's usage line when it is known."""
    text = error.message
    if error.spec is not None:
        text += f"\nUsage: {error.spec.usage(prefix)}"
    return Reply(text, is_error=True)
