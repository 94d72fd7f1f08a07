"""`cloudai master --http-listen ADDR` as a user runs it: a real process serving the console
over HTTPS with the cluster's certificate; a bad address is one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import requests

from tests.cluster import ProcCluster, free_port
from tests.helpers import eventually


def test_master_serves_the_console_over_https(tmp_path: Any) -> None:
    port = free_port()
    with ProcCluster(tmp_path, master_args=("--http-listen", f"127.0.0.1:{port}")) as c:
        ca = str(c.home / "pki" / "ca.crt")
        url = f"https://127.0.0.1:{port}"

        def answers() -> Any:
            resp = requests.get(
                f"{url}/api/v1/workers",
                headers={"Authorization": f"Bearer {c.token}"},
                verify=ca,
                timeout=10,
            )
            return resp.status_code == 200 and resp.json()

        assert eventually(answers, what="the console's API") == {"workers": []}
        assert requests.get(f"{url}/login", verify=ca, timeout=10).status_code == 200
        assert f"web console on {url}/" in c.logs()


def test_a_bad_http_listen_address_is_one_line(tmp_path: Any) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudai.cli.main",
            "master",
            "--insecure",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--worker-listen",
            f"127.0.0.1:{free_port()}",
            "--db",
            f"sqlite:///{tmp_path / 'm.db'}",
            "--http-listen",
            "nowhere",
            "--metrics-listen",
            "off",
        ],
        env={**os.environ, "CLOUDAI_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--http-listen: invalid address 'nowhere'" in done.stderr
    assert "Traceback" not in done.stderr
