"""Regenerates the committed gRPC stubs of the layerlens Python client.

    python clients/python/generate_proto.py [OUT_DIR]

Runs grpc_tools.protoc over proto/proto/layerlens/v1/*.proto with `-I proto/proto`, so the
stubs land at OUT_DIR/layerlens/v1/*_pb2.py (default OUT_DIR: clients/python/src) and import
each other as `layerlens.v1.x_pb2`. The stubs are committed so that installing the package
needs no code generator; tests/python/test_proto_stubs.py regenerates them into a temporary
directory and fails when the committed copies differ from what the .proto files produce.
"""

import pathlib
import sys

PYTHON_ROOT = pathlib.Path(__file__).resolve().parent
REPO_ROOT = PYTHON_ROOT.parent.parent
PROTO_ROOT = REPO_ROOT / "proto" / "proto"
PROTO_PACKAGE = pathlib.Path("layerlens") / "v1"

# protoc writes no __init__.py; this one is part of the generated set so that the stubs form
# a regular package that setuptools finds and the staleness test checks.
V1_INIT = '"""Generated gRPC stubs for the layerlens.v1 wire API; regenerate with clients/python/generate_proto.py."""\n'


def generated_files(out_dir):
    """Lists the files this script writes under out_dir, relative to it."""
    out_dir = pathlib.Path(out_dir)
    return sorted(
        path.relative_to(out_dir)
        for path in (out_dir / PROTO_PACKAGE).iterdir()
        if path.name == "__init__.py" or path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    )


def generate(out_dir):
    """Writes the stubs for every .proto of layerlens.v1 into out_dir (created if missing)."""
    # Imported here so that `import generate_proto` (from the staleness test) stays cheap.
    from grpc_tools import protoc
    import grpc_tools

    out_dir = pathlib.Path(out_dir)
    package_dir = out_dir / PROTO_PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    # Stale stubs of a .proto file that was removed must not survive a regeneration.
    for stale in package_dir.iterdir():
        if stale.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")):
            stale.unlink()
    protos = sorted(str(path.relative_to(PROTO_ROOT)) for path in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    # grpc_tools ships the well-known types (google/protobuf/*.proto) beside its module.
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    # protoc resolves the relative .proto names against the -I roots, so the working
    # directory does not matter.
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {status} for {', '.join(protos)}")
    (package_dir / "__init__.py").write_text(V1_INIT)
    return generated_files(out_dir)


def main():
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PYTHON_ROOT / "src"
    for path in generate(out_dir):
        print(out_dir / path)


if __name__ == "__main__":
    main()
