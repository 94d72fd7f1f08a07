"""The master: keeps workers, tasks, assignments and results in the store and places tasks."""
