"""The facility, read-only: topology from the configured preset, live GPU use from jobs."""
