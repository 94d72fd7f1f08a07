"""Resource vectors: a request of, or a capacity in, CPU, memory, storage and GPUs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cloudai.core.limits import (
    CPU_MAX,
    CPU_MIN,
    GPU_MAX,
    MEM_MAX_GB,
    MEM_MIN_GB,
    STORAGE_MAX_GB,
    number_problem,
    quote,
)

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

    def _axis_problems(self, cpu_min: float) -> list[str]:
        problems = [
            p
            for p in (
                number_problem("cpu", self.cpu, cpu_min, CPU_MAX, " cores"),
                number_problem("mem", self.mem_gb, 0.0, MEM_MAX_GB, " GB"),
                number_problem("storage", self.storage_gb, 0.0, STORAGE_MAX_GB, " GB"),
            )
            if p
        ]
        if not isinstance(self.gpu, int) or isinstance(self.gpu, bool) or self.gpu < 0:
            problems.append(f"gpu must be a non-negative integer, got {quote(self.gpu)}")
        elif self.gpu > GPU_MAX:
            problems.append(f"gpu must be at most {GPU_MAX}, got {quote(self.gpu)}")
        return problems

    def validate_request(self) -> list[str]:
        """Problems with this vector as a task request (empty when valid): every axis finite
        and within docs/limits.md; at least CPU_MIN cores; memory 0 (no limit) or at least
        MEM_MIN_GB."""
        problems = self._axis_problems(CPU_MIN)
        if not problems and 0 < self.mem_gb < MEM_MIN_GB:
            problems.append(
                f"mem must be 0 (no limit) or at least {MEM_MIN_GB:g} GB, got {self.mem_gb:g}"
            )
        return problems

    def validate_capacity(self) -> list[str]:
        """Problems with this vector as a worker's capacity (empty when valid)."""
        return self._axis_problems(CPU_MIN)

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
