"""The cluster this worker belongs to: learnt from the master at its first registration, kept
in its state directory (`cluster_id`), and checked in every answer from a master since.

A master started on another store (a forgotten `--db`, another `CLOUDAI_HOME`'s database) is
another cluster: it knows none of this worker's tasks. Such a master is refused, loudly; the
worker keeps its tasks and keeps trying, for the right master may come back. To move a worker
to another cluster on purpose, stop it and remove its `cluster_id` file."""

from __future__ import annotations

import logging
import os
import pathlib
from enum import StrEnum

from cloudai.errors import WrongCluster

__all__ = ["ClusterIdentity", "Verdict", "verdict"]

log = logging.getLogger("cloudai.worker.identity")
FILE = "cluster_id"


class Verdict(StrEnum):
    ACCEPT = "accept"  # the same cluster, or a master that names none (older than IDs)
    LEARN = "learn"  # this worker names none yet: it joins this master's cluster
    REFUSE = "refuse"  # another cluster


def verdict(expected: str, answered: str) -> Verdict:
    """What to make of a master that answers as cluster `answered`, for a worker that belongs
    to `expected` ("" when it has not joined one yet)."""
    if not answered:
        return Verdict.ACCEPT
    if not expected:
        return Verdict.LEARN
    return Verdict.ACCEPT if answered == expected else Verdict.REFUSE


class ClusterIdentity:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(state_dir) / FILE
        try:
            self.expected = self.path.read_text().strip()
        except FileNotFoundError:
            self.expected = ""

    def check(self, answered: str, master: str) -> None:
        """Accept an answer from `master`, a master of cluster `answered`: learn the cluster
        the first time; raise WrongCluster for a master of another one."""
        found = verdict(self.expected, answered)
        if found is Verdict.REFUSE:
            raise WrongCluster(
                f"the master at {master} is cluster {answered[:64]}, this worker belongs to "
                f"cluster {self.expected} (a master on another store?)",
                answered,
            )
        if found is Verdict.LEARN:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(answered + "\n")
            tmp.replace(self.path)
            self.expected = answered
            log.info("joined cluster %s (kept in %s)", answered, self.path)
