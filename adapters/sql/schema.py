"""Tables of the SQL store. Migrations in `migrations/` create exactly these; a test compares them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only gives AUTOINCREMENT semantics to INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

groups = Table(
    "groups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(32), nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("channel_name", Text, nullable=False, server_default=""),
    Column("phase", String(32), nullable=False),
    Column("phase_since", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("goal_quorum", Integer, nullable=True),
    Column("decision_window_s", Integer, nullable=True),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("quiet_start", String(5), nullable=True),
    Column("quiet_end", String(5), nullable=True),
    Column("auto_review", Boolean, nullable=False, server_default=true()),
    Column("auto_checkin", Boolean, nullable=False, server_default=true()),
    Column("last_activity_at", DateTime(timezone=True), nullable=True),
    Column("heartbeat_sent_at", DateTime(timezone=True), nullable=True),
    Column("welcome_text", Text, nullable=False, server_default=""),
    Column("welcome_until", DateTime(timezone=True), nullable=True),
    # Reminders in the last share of a consent poll's or review's time, in percent; NULL: the default.
    Column("remind_window", Integer, nullable=True),
    Column("auto_radar", Boolean, nullable=False, server_default=true()),
    Column("radar_limits", Text, nullable=False, server_default=""),  # JSON: the group's own thresholds
    Column("radar_next_at", DateTime(timezone=True), nullable=True, index=True),
    Column("advised_at", DateTime(timezone=True), nullable=True),  # the last phase advice
    Column("auto_threads", Boolean, nullable=False, server_default=true()),  # a thread for every decision
    UniqueConstraint("platform", "channel_id"),
)

phase_changes = Table(
    "phase_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("from_phase", String(32), nullable=True),
    Column("to_phase", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by_name", Text, nullable=False),
    Column("by_key", String(300), nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)

adapter_state = Table(
    "adapter_state",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Ids of batches a platform pushed (Matrix appservice transactions), recorded with the state that covers
# their events: a batch pushed again is answered without applying it twice. The newest are kept.
inbound_batches = Table(
    "inbound_batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("namespace", String(32), nullable=False),
    Column("batch_id", String(255), nullable=False),
    UniqueConstraint("namespace", "batch_id"),
    sqlite_autoincrement=True,
)

signals = Table(
    "signals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

polls = Table(
    "polls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("question", Text, nullable=False),
    Column("options", Text, nullable=False),  # JSON list of [emoji, label]
    Column("multiple", Boolean, nullable=False),
    Column("hidden", Boolean, nullable=False),
    Column("author_key", String(300), nullable=False),
    Column("author_name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closes_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("platform", String(32), nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("vote_seq", BigInteger, nullable=False, server_default="0"),
    Column("remind_at", DateTime(timezone=True), nullable=True, index=True),
    Column("anonymous", Boolean, nullable=False, server_default=false()),
    Index("ix_polls_message", "platform", "message_id"),
    Index("ix_polls_due", "closed_at", "closes_at"),
)

poll_reactions = Table(
    "poll_reactions",
    metadata,
    Column("poll_id", Id, ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True),
    Column("user_key", String(300), primary_key=True),
    Column("option", Integer, primary_key=True),
    Column("user_name", Text, nullable=False),
    Column("present", Boolean, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The key of each open anonymous poll's votes (core/ballots.py); deleted when the poll closes.
poll_secrets = Table(
    "poll_secrets",
    metadata,
    Column("poll_id", Id, ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
)

goals = Table(
    "goals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("proposer_key", String(300), nullable=False),
    Column("proposer_name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("poll_id", Id, ForeignKey("polls.id", ondelete="SET NULL"), nullable=True, index=True),
    # Who ran the command: the proposer, or whoever put a member's reflection forward as a goal.
    Column("put_forward_by_key", String(300), nullable=False, server_default=""),
    Column("put_forward_by_name", Text, nullable=False, server_default=""),
    # The goal this one reshapes (`goal amend`); that goal is superseded.
    Column("reshapes_id", Id, ForeignKey("goals.id", ondelete="SET NULL"), nullable=True, index=True),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("cron", String(120), nullable=False),
    Column("description", String(200), nullable=False),
    Column("text", Text, nullable=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("next_occurrence", DateTime(timezone=True), nullable=True),
    Column("next_due_at", DateTime(timezone=True), nullable=True),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by_key", String(300), nullable=False, server_default=""),
    Index("ix_schedules_due", "paused", "next_due_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("schedule_id", Id, ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True),
    Column("occurrence", DateTime(timezone=True), primary_key=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("started_by", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("closes_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("started_by_key", String(300), nullable=False, server_default=""),
    Column("remind_at", DateTime(timezone=True), nullable=True, index=True),
    Column("message_id", Text, nullable=True),  # its questions' message in the group's channel
    Index("ix_reviews_due", "closed_at", "closes_at"),
)

reflections = Table(
    "reflections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("review_id", Id, ForeignKey("reviews.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("question", Integer, nullable=True),
    Column("user_key", String(300), nullable=False, index=True),
    Column("user_name", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("platform", String(32), nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("channel_name", Text, nullable=False, server_default=""),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("reply_to", Text, nullable=True),
    Column("user_id", Text, nullable=True),
    Column("user_name", Text, nullable=True),
    Column("reactions", Text, nullable=False, server_default="[]"),  # JSON list of emoji
    Column("poll_id", Id, ForeignKey("polls.id", ondelete="SET NULL"), nullable=True),
    Column("thread", Text, nullable=True),  # core.outbox.Thread: `poll:7`, `review:3`
    # A secret's confirmation (core.outbox.Post.sealed): deleted whatever its outcome.
    Column("sealed", Text, nullable=True, index=True),
    Column("buttons", Text, nullable=False, server_default="[]"),  # JSON list of labels
    Column("channel_line", Text, nullable=True),  # with a thread: the channel's line when it goes there
    Column("thread_only", Boolean, nullable=False, server_default=false()),
    # The review whose message the post becomes. No foreign key (see migration 0014): a review is
    # deleted only with its group, and the group's outbox rows with it.
    Column("review_id", Id, nullable=True),
    # The meeting occurrence the post announces (core/meetings.py); no foreign key, as for review_id.
    Column("occurrence_id", Id, nullable=True),
    # The schedule whose occurrence the post is (migration 0019); no foreign key, as for review_id.
    Column("schedule_id", Id, nullable=True),
    Column("state", String(16), nullable=False),
    Column("message_id", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Index("ix_outbox_due", "state", "platform", "next_attempt_at"),
    # Row ids are idempotency keys on the platforms: SQLite must never reuse a deleted row's id.
    sqlite_autoincrement=True,
)

failed_events = Table(
    "failed_events",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("reason", Text, nullable=False),
)

# The roster (core/members.py): one row per member and group, kept when they leave.
members = Table(
    "members",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("user_key", String(300), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("left_at", DateTime(timezone=True), nullable=True),
    Column("last_active_at", DateTime(timezone=True), nullable=True),
    Column("intro", Text, nullable=False, server_default=""),
    Column("private", Boolean, nullable=False, server_default=false()),
    Column("buddy", Boolean, nullable=False, server_default=false()),
    Column("reminders", Boolean, nullable=False, server_default=true()),
    Column("buddy_key", String(300), nullable=False, server_default=""),
    Column("paired_at", DateTime(timezone=True), nullable=True),
    Column("welcome_due_at", DateTime(timezone=True), nullable=True, index=True),
    UniqueConstraint("group_id", "user_key"),
)


# What the radar found (core/radar.py): the record that keeps it from saying the same thing twice, and
# that forget-me clears of a member.
radar_findings = Table(
    "radar_findings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("subject_key", String(300), nullable=False, server_default="", index=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Concerns members voiced about goals (core/concerns.py). An anonymous one keeps no author: its key and
# name are empty, and its time is the day only.
concerns = Table(
    "concerns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("goal_id", Id, ForeignKey("goals.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("author_key", String(300), nullable=False, server_default="", index=True),
    Column("author_name", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("addressed_at", DateTime(timezone=True), nullable=True),
    Column("addressed_by_key", String(300), nullable=False, server_default=""),
    Column("addressed_by_name", Text, nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
)

# Whom a consent poll asked for their concern: once per poll and member, across restarts and processes.
concern_asks = Table(
    "concern_asks",
    metadata,
    Column("poll_id", Id, ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True),
    Column("user_key", String(300), primary_key=True, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The group's roles (core/roles.py): built-in ones are added on a group's first `role` command.
roles = Table(
    "roles",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("duty", Text, nullable=False),
    Column("built_in", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("holder_key", String(300), nullable=False, server_default="", index=True),
    Column("holder_name", Text, nullable=False, server_default=""),
    Column("held_since", DateTime(timezone=True), nullable=True),
    Column("rotation", String(16), nullable=False, server_default="off"),
    Column("next_turn_at", DateTime(timezone=True), nullable=True),
    Column("next_week_at", DateTime(timezone=True), nullable=True, index=True),
    UniqueConstraint("group_id", "name"),
)

# Who opted into a role's rotation, and when they last held it (whose turn is next).
role_pool = Table(
    "role_pool",
    metadata,
    Column("role_id", Id, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("user_key", String(300), primary_key=True, index=True),
    Column("user_name", Text, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("last_held_at", DateTime(timezone=True), nullable=True),
    Column("times_held", Integer, nullable=False, server_default="0"),
)

# Each week's wrap: the draft the wrapper was given, and the summary they posted.
wraps = Table(
    "wraps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("week_end", DateTime(timezone=True), nullable=False),
    Column("wrapper_key", String(300), nullable=False, index=True),
    Column("wrapper_name", Text, nullable=False),
    Column("drafted_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("digest", Text, nullable=False, server_default=""),
    Column("fallback_at", DateTime(timezone=True), nullable=True, index=True),
    Column("text", Text, nullable=False, server_default=""),
    Column("wrapped_at", DateTime(timezone=True), nullable=True),
)

# Meetings (core/meetings.py): one-off (`at`) or recurring (`cron`), in the group's timezone.
meetings = Table(
    "meetings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("cron", String(120), nullable=True),
    Column("description", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("skips", Text, nullable=False, server_default=""),  # local dates, comma-separated
    Column("created_by", Text, nullable=False),
    Column("created_by_key", String(300), nullable=False, server_default="", index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
)

# A meeting's occurrences: the next one, planned ahead, and those past (attendance). `next_due_at` is
# the claim: a step moves it on by compare-and-swap.
meeting_occurrences = Table(
    "meeting_occurrences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("meeting_id", Id, ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("announce_at", DateTime(timezone=True), nullable=False),
    Column("remind_at", DateTime(timezone=True), nullable=True),
    Column("next_due_at", DateTime(timezone=True), nullable=True, index=True),
    Column("announced", Boolean, nullable=False, server_default=false()),
    Column("reminded", Boolean, nullable=False, server_default=false()),
    Column("skipped", Boolean, nullable=False, server_default=false()),
    Column("platform", String(32), nullable=True),
    Column("channel_id", Text, nullable=True),
    Column("message_id", String(255), nullable=True),
    UniqueConstraint("meeting_id", "starts_at"),
    Index("ix_meeting_occurrences_message", "platform", "message_id"),
)

# One RSVP per member and occurrence: their latest choice (✅ ❔ ❌).
meeting_rsvps = Table(
    "meeting_rsvps",
    metadata,
    Column("occurrence_id", Id, ForeignKey("meeting_occurrences.id", ondelete="CASCADE"), primary_key=True),
    Column("user_key", String(300), primary_key=True, index=True),
    Column("user_name", Text, nullable=False),
    Column("choice", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
