"""What the bot says to prompt reflection, in our own words: a bank per phase, the action review."""

from __future__ import annotations

from core.lifecycle import Phase

PROMPT_BANK: dict[Phase, tuple[str, ...]] = {
    Phase.CONVENING: (
        "Who haven't you heard from yet? Say hello to someone new and ask what they hope to learn.",
        "What brought you here, and what would make this group worth your time?",
        "Share one thing you already know that others here might not. Small is fine.",
        "What kind of help do you like to get, and what kind do you like to give?",
    ),
    Phase.ORGANIZING: (
        "If we met again in a month, what would you want us to have learned or made together?",
        "Which proposed goal excites you most, and which one worries you? Say why.",
        "How do we want to work: when do we meet, where do we keep notes, who keeps track?",
        "What is the smallest first step we could all take this week?",
    ),
    Phase.COOPERATING: (
        "Check-in: what did you work on since last time, and what is next?",
        "Where are you stuck? Name it here: someone may have been stuck there before.",
        "What did someone in the group do lately that helped you? Tell them.",
        "Is our pace right? Too fast, too slow, or just about right?",
        "Share something you made or found this week, however rough.",
    ),
    Phase.ASSESSING: (
        "Looking back: what did we set out to do, and what actually happened?",
        "What are you proud of so far? What would you do differently?",
        "Whose point of view have we not heard yet about how things are going?",
        "What have you learned here that you did not expect to learn?",
    ),
    Phase.CHANGING: (
        "What is one thing we should keep doing, one we should stop, and one we should try?",
        "Is our meeting rhythm still right for everyone?",
        "Which goal should we pick up next, or reshape, given what we learned?",
        "What would make it easier for a newcomer to join us now?",
    ),
}

REVIEW_QUESTIONS: tuple[str, ...] = (
    "What did we intend? What did we expect to learn or make together?",
    "What is actually happening? What are we learning, and how?",
    "What different perspectives are there on what is happening?",
    "What did we learn, or change, along the way?",
    "What else should we change going forward?",
)

HEARTBEAT = (
    "It has been quiet here for {days} days. How is everyone doing? Even a one-line update helps"
    " the group keep its rhythm: {prefix}reflect <a thought>, or {prefix}pulse for a quick check-in."
)


def next_prompt(phase: Phase, used: list[int], offset: int) -> tuple[str, list[int]]:
    """The next prompt of the phase's bank that has not been used since the bank last ran out.

    `offset` (the group's id) makes different groups start at different prompts.
    """
    bank = PROMPT_BANK[phase]
    if len(set(used)) >= len(bank):
        used = []
    for step in range(len(bank)):
        index = (offset + step) % len(bank)
        if index not in used:
            return bank[index], [*used, index]
    raise AssertionError("unreachable: the bank has an unused prompt")
