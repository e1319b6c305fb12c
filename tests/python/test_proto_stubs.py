"""The committed gRPC stubs are exactly what clients/python/generate_proto.py makes now.

The stubs are committed so that `pip install` needs no code generator; this test is what
keeps them from going stale when a .proto file changes.
"""

import importlib.util

from conftest import REPO_ROOT

GENERATOR = REPO_ROOT / "clients" / "python" / "generate_proto.py"
COMMITTED = REPO_ROOT / "clients" / "python" / "src"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_proto", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    generator = load_generator()
    fresh = generator.generate(tmp_path)
    committed = generator.generated_files(COMMITTED)
    assert fresh == committed, "the set of stub files differs; run clients/python/generate_proto.py"
    # Every .proto of the package produces stubs; a new one must not be forgotten.
    protos = sorted(path.stem for path in (REPO_ROOT / "proto" / "proto" / "layerlens" / "v1").glob("*.proto"))
    assert sorted({path.name.split("_pb2")[0] for path in fresh if "_pb2" in path.name}) == protos
    stale = [str(path) for path in fresh if (tmp_path / path).read_bytes() != (COMMITTED / path).read_bytes()]
    assert not stale, f"stale stubs {stale}; run clients/python/generate_proto.py"
