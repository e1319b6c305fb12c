"""`pip install clients/python` produces a package that imports on its own.

The other tests import the client from its source tree; this one installs it the way a
user would (into a temporary --target directory, never into the shared venv) and imports
it in a fresh interpreter that cannot see the source tree, checking that the generated
stubs and type stubs are packaged and that importing layerlens does not import torch.
"""

import json
import shutil
import subprocess
import sys

from conftest import REPO_ROOT

PIP_TIMEOUT_S = 300

CHECK_IMPORT = """
import json, sys
import layerlens
from layerlens.v1 import explain_pb2_grpc, generate_pb2_grpc, models_pb2_grpc, common_pb2
import importlib.resources
v1 = importlib.resources.files("layerlens.v1")
print(json.dumps({
    "file": layerlens.__file__,
    "version": layerlens.__version__,
    "connect": callable(layerlens.connect),
    "extension": callable(layerlens.load_ipython_extension),
    "torch_imported": "torch" in sys.modules,
    "pyi": sorted(p.name for p in v1.iterdir() if p.name.endswith(".pyi")),
}))
"""


def test_pip_install_then_import(tmp_path):
    # Build from a copy so that setuptools' build/ and egg-info never land in the tree.
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    target = tmp_path / "site"
    # --no-build-isolation builds with the setuptools already in this environment, so the
    # test needs no package index.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True,
        timeout=PIP_TIMEOUT_S,
    )
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORT],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    facts = json.loads(result.stdout)
    assert facts["file"].startswith(str(target)), facts["file"]
    assert facts["version"] == "0.1.0"
    assert facts["connect"] and facts["extension"]
    assert not facts["torch_imported"], "import layerlens must not import torch"
    # Every .proto's type stubs are in the installed package.
    protos = sorted((REPO_ROOT / "proto" / "proto" / "layerlens" / "v1").glob("*.proto"))
    assert facts["pyi"] == [f"{proto.stem}_pb2.pyi" for proto in protos]
