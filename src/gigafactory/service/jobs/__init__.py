"""Jobs: submission, the lifecycle state machine, events, idempotency and pagination."""
