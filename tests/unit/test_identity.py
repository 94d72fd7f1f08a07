"""The worker's side of the cluster identity: what it makes of a master's answer, and the
file that keeps it across restarts."""

from __future__ import annotations

import pathlib

import pytest

from cloudai.errors import WrongCluster
from cloudai.worker.identity import ClusterIdentity, Verdict, verdict


@pytest.mark.parametrize(
    ("expected", "answered", "found"),
    [
        ("", "cluster-a", Verdict.LEARN),  # a new worker joins the first master's cluster
        ("cluster-a", "cluster-a", Verdict.ACCEPT),
        ("cluster-a", "cluster-b", Verdict.REFUSE),  # a master on another store
        ("cluster-a", "", Verdict.ACCEPT),  # a master older than cluster IDs
        ("", "", Verdict.ACCEPT),
    ],
)
def test_verdict(expected: str, answered: str, found: Verdict) -> None:
    assert verdict(expected, answered) is found


def test_the_cluster_is_learnt_once_kept_and_another_refused(tmp_path: pathlib.Path) -> None:
    ident = ClusterIdentity(tmp_path / "worker-w1")
    assert ident.expected == ""
    ident.check("cluster-a", "m:1")
    assert (tmp_path / "worker-w1" / "cluster_id").read_text().strip() == "cluster-a"
    restarted = ClusterIdentity(tmp_path / "worker-w1")
    assert restarted.expected == "cluster-a"
    with pytest.raises(WrongCluster) as refused:
        restarted.check("cluster-b", "m:1")
    assert refused.value.cluster_id == "cluster-b"
    assert "cluster cluster-b" in str(refused.value) and "cluster-a" in str(refused.value)
    assert restarted.expected == "cluster-a"  # a refusal changes nothing
    restarted.check("cluster-a", "m:1")
