"""The action review and reflections, as pure rules and texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import format_time
from core.prompts import REVIEW_QUESTIONS
from core.refs import UserRef

# The author of a reflection kept without its author's name (`reflect --anonymous`).
ANONYMOUS = UserRef("anonymous", "", "anonymous")
DEFAULT_REVIEW_TIME = timedelta(days=3)
MAX_REVIEW_TIME = timedelta(days=32)
MAX_REFLECTION = 1000


@dataclass(frozen=True, slots=True)
class Review:
    id: int
    group_id: int
    started_by: str
    started_at: datetime
    closes_at: datetime
    closed_at: datetime | None = None
    started_by_key: str = ""
    remind_at: datetime | None = None  # when its reminders are due (core/reminders.py); None: none due
    message_id: str | None = None  # its questions' message in the group's channel, once posted


@dataclass(frozen=True, slots=True)
class Reflection:
    id: int
    group_id: int
    review_id: int | None
    question: int | None  # 1 to 5 within a review; None for a free reflection
    user_key: str
    user_name: str
    text: str
    at: datetime

    @property
    def author(self) -> UserRef:
        """The member who wrote it, as their key names them ("<platform>:<id>")."""
        platform, _, user_id = self.user_key.partition(":")
        return UserRef(platform, user_id, self.user_name)


def sealed(review: Review) -> str:
    """What a confirmation of an anonymous answer to this review is sealed with (see `Post.sealed`)."""
    return f"review:{review.id}"


def render_review(review: Review, prefix: str, tz: str = "UTC") -> str:
    lines = [f"Action review {review.id}: five questions for the group."]
    lines += [f"{i}. {q}" for i, q in enumerate(REVIEW_QUESTIONS, start=1)]
    lines.append(
        f"Answer with {prefix}reflect q<number> <your answer> (q1 to q{len(REVIEW_QUESTIONS)}),"
        " as often as you like."
        f" The review closes {format_time(review.closes_at, tz)}."
    )
    return "\n".join(lines)


def summary_line(review: Review, answers: Sequence[Reflection]) -> str:
    """The one line the channel gets when the summary itself is posted in the review's thread."""
    answered, people = len(answers), len({a.user_key for a in answers})
    took = (
        f"{answered} answer{'s' * (answered != 1)} from {people} member{'s' * (people != 1)}"
        if answers
        else "no answers"
    )
    return f"Action review {review.id} is closed ({took}); its summary is in the review's thread."


def reflection_line(reflection: Reflection) -> str:
    """A member's answer to a review question, as the review's thread shows it."""
    return f"{reflection.user_name}, question {reflection.question}: {reflection.text} [r{reflection.id}]"


def render_summary(review: Review, answers: Sequence[Reflection], prefix: str) -> str:
    people = sorted({a.user_name for a in answers if a.user_key != ANONYMOUS.key})
    unnamed = sum(a.user_key == ANONYMOUS.key for a in answers)
    lines = [f"Action review {review.id} summary."]
    if not answers:
        lines.append("Nobody answered this time. That is worth a thought too: was it the wrong moment?")
        return "\n".join(lines)
    if people:
        lines.append(f"Took part: {', '.join(people)}.")
    if unnamed:
        lines.append(f"Shared anonymously: {unnamed} {'answer' if unnamed == 1 else 'answers'}.")
    for number, question in enumerate(REVIEW_QUESTIONS, start=1):
        mine = [a for a in answers if a.question == number]
        if not mine:
            continue
        lines.append(f"{number}. {question}")
        lines += [f"  - {a.user_name}: {a.text} [r{a.id}]" for a in mine]
    free = [a for a in answers if a.question is None]
    if free:
        lines.append("Also shared:")
        lines += [f"  - {a.user_name}: {a.text} [r{a.id}]" for a in free]
    proposals = [a for a in answers if a.question == 5]
    if proposals:
        lines.append(
            "Each answer to question 5 can become a goal: "
            + ", ".join(f"{prefix}goal propose r{a.id}" for a in proposals)
        )
    return "\n".join(lines)
