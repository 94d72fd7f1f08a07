"""Placement: proposes a worker for a task. The master's planner commits it in the store."""
