"""cloudai: run containers across a cluster of machines, watch them and cancel them."""

__version__ = "0.1.0"
