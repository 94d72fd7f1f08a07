"""cloudai's benchmark suite: `python -m bench` (see docs/performance.md).

Floors (the Docker engine's own API), cloudai (master + one Docker worker), Docker Swarm on the
same engine, and master scale (simulated workers over the real gRPC protocol), in one run, so
the ratios hold on a noisy machine."""

__all__: list[str] = []
