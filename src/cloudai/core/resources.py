"""Resource vectors: a request of, or a capacity in, CPU, memory, storage and GPUs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Resources"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Resources:
    cpu: float = 0.0
    mem_gb: float = 0.0
    storage_gb: float = 0.0
    gpu: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu + other.cpu,
            self.mem_gb + other.mem_gb,
            self.storage_gb + other.storage_gb,
            self.gpu + other.gpu,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu - other.cpu,
            self.mem_gb - other.mem_gb,
            self.storage_gb - other.storage_gb,
            self.gpu - other.gpu,
        )

    def fits_in(self, room: Resources) -> bool:
        """True when this request fits in `room` on every axis."""
        return (
            self.cpu <= room.cpu + _EPS
            and self.mem_gb <= room.mem_gb + _EPS
            and self.storage_gb <= room.storage_gb + _EPS
            and self.gpu <= room.gpu
        )

    def validate_request(self) -> list[str]:
        """Problems with this vector as a task request (empty when valid)."""
        problems = []
        for name, value in (("cpu", self.cpu), ("mem", self.mem_gb), ("storage", self.storage_gb)):
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a non-negative number, got {value!r}")
        if self.gpu < 0 or self.gpu != int(self.gpu):
            problems.append(f"gpu must be a non-negative integer, got {self.gpu!r}")
        if self.cpu <= 0 and not problems:
            problems.append("cpu must be greater than 0")
        return problems

    @staticmethod
    def total(items: Iterable[Resources]) -> Resources:
        out = Resources()
        for item in items:
            out = out + item
        return out

    def clamp_zero(self) -> Resources:
        return Resources(
            max(self.cpu, 0.0), max(self.mem_gb, 0.0), max(self.storage_gb, 0.0), max(self.gpu, 0)
        )

    def __str__(self) -> str:
        return (
            f"cpu={self.cpu:g} mem={self.mem_gb:g}GB storage={self.storage_gb:g}GB gpu={self.gpu}"
        )
