"""The Matrix adapter: `!peer` text commands, reactions as votes, notices in reply (matrix-nio)."""
