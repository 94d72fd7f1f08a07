"""The worker: runs each task through a runtime, reports results to the master."""
