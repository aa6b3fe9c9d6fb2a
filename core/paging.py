"""Listings that can grow, cut into pages that each fit one chat message.

Every platform gets the same pages, sized to the smallest message we may send (Discord's 2,000
characters), so that `goal list 2` shows the same goals on Discord, on Matrix and in the console, and
no listing depends on an adapter splitting it. A listing names its most relevant items first (open
goals before closed ones; for a history, its last entries), and every page of several says which page
it is and how to ask for the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.commands import CommandSpec, UsageError

PAGE_LIMIT = 2000  # Discord's content limit, the smallest of the platforms
ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a listing: its line (or lines), under a section heading repeated on every page
    the section reaches."""

    text: str
    section: str = ""


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing command shows, before it is cut into pages.

    `command` is how a member asks for this listing (with prefix and any filter); page n is asked
    for with `command n`. `hint` goes with the page line when there are several pages (other ways to
    narrow the listing down). With `latest_first`, the items are a history, oldest first: page 1
    holds the last of them, page 2 the ones before, each page still oldest first.
    """

    what: str  # "goals", "nudges": what the items are, for the answer to a page that does not exist
    head: str
    items: Sequence[Item]
    command: str
    empty: str  # the answer when there are no items at all
    foot: str = ""
    hint: str = ""
    latest_first: bool = False

    def pages(self, limit: int = PAGE_LIMIT) -> list[str]:
        """Every page's text, each at most `limit` characters; one page (`empty`) without items."""
        if not self.items:
            return [_fit(self.empty, limit)]
        whole = self._render(list(self.items), "")
        if len(whole) <= limit:
            return [whole]
        # The page line names the number of pages, known only once they are cut: make room for the
        # longest it can be (as many pages as items).
        most = len(self.items)
        room = max(len(self._page_line(most, most + 1)), len(self._page_line(most, most)))
        ordered = list(reversed(self.items)) if self.latest_first else list(self.items)
        cuts = self._cut(ordered, limit - room - 1)
        if self.latest_first:
            cuts = [list(reversed(cut)) for cut in cuts]
        return [
            _fit(self._render(cut, self._page_line(n, len(cuts))), limit)
            for n, cut in enumerate(cuts, start=1)
        ]

    def page(self, number: int, spec: CommandSpec | None = None, limit: int = PAGE_LIMIT) -> str:
        """Page `number` (from 1); a page that does not exist is bad input, answered with the usage."""
        pages = self.pages(limit)
        if not 1 <= number <= len(pages):
            count = "1 page" if len(pages) == 1 else f"{len(pages)} pages"
            raise UsageError(f"There is no page {number} of {self.what}: they fill {count}.", spec)
        return pages[number - 1]

    # Cutting ---------------------------------------------------------------------------------------

    def _frame(self) -> list[str]:
        return [line for line in (self.head, self.foot) if line]

    def _cut(self, items: list[Item], budget: int) -> list[list[Item]]:
        """Items in runs that fit `budget` characters each, with the head, foot and section headings."""
        frame = sum(len(line) + 1 for line in self._frame())
        widest_heading = max((len(i.section) + 1 for i in items), default=0)
        longest = max(budget - frame - widest_heading - 1, 1)
        cuts: list[list[Item]] = []
        current: list[Item] = []
        size = frame
        for item in items:
            item = _shortened(item, longest)
            cost = len(item.text) + 1
            if not current or current[-1].section != item.section:
                cost += len(item.section) + 1 if item.section else 0
            if current and size + cost > budget:
                cuts.append(current)
                current, size = [], frame
                cost = len(item.text) + 1 + (len(item.section) + 1 if item.section else 0)
            current.append(item)
            size += cost
        cuts.append(current)
        return cuts

    def _render(self, items: list[Item], page_line: str) -> str:
        lines = [self.head] if self.head else []
        section: str | None = None
        for item in items:
            if item.section and item.section != section:
                lines.append(item.section)
            section = item.section
            lines.append(item.text)
        lines += [line for line in (self.foot, page_line) if line]
        return "\n".join(lines)

    def _page_line(self, number: int, count: int) -> str:
        if count <= 1:
            return ""
        if number < count:
            line = f"Page {number} of {count}. Next: {self.command} {number + 1}."
        else:
            line = f"Page {number} of {count}, the last. First: {self.command} 1."
        return f"{line} {self.hint}" if self.hint else line


def one_line(text: str, limit: int) -> str:
    """Member text in a listing's line: its whitespace made single spaces, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _shortened(item: Item, longest: int) -> Item:
    if len(item.text) <= longest:
        return item
    return Item(item.text[: longest - 1].rstrip() + ELLIPSIS, item.section)


def _fit(text: str, limit: int) -> str:
    """A last guard: no page is longer than the limit, whatever its head or foot."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
