"""Regenerate src/cloudai/api/v1 from proto/cloudai/api/v1/*.proto.

Usage: .venv/bin/python scripts/gen_protos.py   (needs grpcio-tools: pip install -e .[dev])
"""

from __future__ import annotations

import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "src"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return int(code)
    for pkg in ("cloudai/api", "cloudai/api/v1"):
        (OUT_DIR / pkg / "__init__.py").touch()
    print(f"generated {len(protos)} files into {OUT_DIR / 'cloudai/api/v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
