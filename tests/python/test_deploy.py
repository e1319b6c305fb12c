"""The deployment files in deploy/: Kubernetes manifests and the nginx configuration.

No cluster is needed: every manifest is validated against the Kubernetes API's JSON
schemas (kubernetes-validate, which ships them, so this runs offline) in strict mode,
which refuses misspelt fields; nginx itself checks the configuration (`nginx -t`, with
Debian's nginx, installed with apt when it is missing); the daemon's arguments are
checked against the flags `layerlensd --help` lists; and the names, ports and paths that
must agree across files (nginx upstreams and per-replica Services, probe and container
ports, the metrics annotation, mounts) are compared. The proxy's behaviour with real
daemons is tested in tests/tests/scaleout.rs.
"""

import os
import pathlib
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import REPO_ROOT, daemon_binary

DEPLOY = REPO_ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "layerlens.conf"
MANIFEST_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
# gRPC probes are GA from Kubernetes 1.27: the oldest API the manifests are meant for.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]


def load_resources():
    resources = []
    for path in MANIFEST_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                resources.append((path.name, document))
    return resources


RESOURCES = load_resources()


def resource(kind, name):
    matches = [document for _, document in RESOURCES if document["kind"] == kind and document["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name} in deploy/kubernetes, found {len(matches)}"
    return matches[0]


def container(workload):
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']} should run one container"
    return containers[0]


def flag_value(args, flag):
    assert args.count(flag) == 1, f"{flag} should appear once in {args}"
    return args[args.index(flag) + 1]


def test_the_manifests_are_there():
    names = {path.name for path in MANIFEST_FILES}
    assert {"layerlensd.yaml", "nginx.yaml"} <= names
    kinds = sorted(document["kind"] for _, document in RESOURCES)
    assert kinds.count("StatefulSet") == 1 and kinds.count("Deployment") == 1 and "ConfigMap" in kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("file_name,document", RESOURCES, ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in RESOURCES])
def test_every_manifest_is_valid_kubernetes(file_name, document, version):
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{file_name}: {document['kind']} {document['metadata']['name']} is not valid for Kubernetes {version}: {error}")


def test_the_validator_refuses_a_misspelt_field():
    # The control for the test above: strict validation must catch what kubectl would.
    statefulset = resource("StatefulSet", "layerlensd")
    misspelt = {**statefulset, "spec": {**statefulset["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[0], strict=True)


def layerlensd_flags():
    """{flag: takes a value} from `layerlensd --help`."""
    binary = daemon_binary()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it first (cargo build --bin layerlensd)")
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    flags = {}
    for match in re.finditer(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)( <[^>]+>)?", help_text, re.MULTILINE):
        flags[match.group(1)] = match.group(2) is not None
    assert "--listen" in flags and flags["--listen"], f"could not read the flags from layerlensd --help:\n{help_text}"
    return flags


def test_the_daemon_arguments_are_flags_layerlensd_accepts():
    flags = layerlensd_flags()
    args = container(resource("StatefulSet", "layerlensd"))["args"]
    index = 0
    while index < len(args):
        flag = args[index]
        assert flag in flags, f"layerlensd has no flag {flag} (layerlensd --help lists {sorted(flags)})"
        if flags[flag]:
            assert index + 1 < len(args) and not args[index + 1].startswith("--"), f"{flag} needs a value in {args}"
            index += 2
        else:
            index += 1
    # A non-loopback address needs authentication (README "Access"): tokens, not --insecure.
    assert flag_value(args, "--listen").startswith("0.0.0.0:")
    assert "--tokens" in args and "--insecure" not in args
    assert re.fullmatch(r"cuda:0", flag_value(args, "--device"))


def test_names_ports_and_mounts_agree():
    statefulset = resource("StatefulSet", "layerlensd")
    daemon = container(statefulset)
    args = daemon["args"]
    ports = {port["name"]: port["containerPort"] for port in daemon["ports"]}
    grpc_port = int(flag_value(args, "--listen").rsplit(":", 1)[1])
    metrics_port = int(flag_value(args, "--metrics-listen").rsplit(":", 1)[1])
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert daemon[probe]["grpc"]["port"] == grpc_port, f"{probe} does not probe the gRPC port"
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port) and annotations["prometheus.io/scrape"] == "true"
    assert daemon["resources"]["limits"]["nvidia.com/gpu"] == 1

    # The tokens file and the store lie on the volumes meant for them.
    volumes = {volume["name"]: volume for volume in statefulset["spec"]["template"]["spec"]["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in daemon["volumeMounts"]}
    tokens_path = pathlib.PurePosixPath(flag_value(args, "--tokens"))
    assert tokens_path.parent == pathlib.PurePosixPath(mounts["tokens"])
    assert tokens_path.name in [item["path"] for item in volumes["tokens"]["secret"]["items"]]
    assert flag_value(args, "--store") == mounts["store"]
    claim = resource("PersistentVolumeClaim", volumes["store"]["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every replica mounts the same store"

    # The governing Service is headless; each replica has a Service of its own, and
    # nginx's upstream lists exactly those, on the gRPC port.
    headless = resource("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    replicas = statefulset["spec"]["replicas"]
    pod_names = [f"{statefulset['metadata']['name']}-{index}" for index in range(replicas)]
    for pod_name in pod_names:
        service = resource("Service", pod_name)
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod_name
        assert [port["port"] for port in service["spec"]["ports"]] == [grpc_port]
    upstream_block = re.search(r"^\s*upstream layerlens \{(.*?)^\s*\}", NGINX_CONF.read_text(), re.MULTILINE | re.DOTALL)
    assert upstream_block, "deploy/nginx/layerlens.conf has no `upstream layerlens { ... }`"
    upstreams = re.findall(r"^\s*server\s+([^:\s;]+):(\d+)[\s;]", upstream_block.group(1), re.MULTILINE)
    assert upstreams == [(pod_name, str(grpc_port)) for pod_name in pod_names]

    # nginx listens where its container port, probes and Service point.
    nginx = container(resource("Deployment", "layerlens-nginx"))
    listen = re.search(r"^\s*listen\s+(\d+)\s+http2;", NGINX_CONF.read_text(), re.MULTILINE)
    assert listen, "deploy/nginx/layerlens.conf should `listen PORT http2;`"
    assert nginx["ports"] == [{"name": "grpc", "containerPort": int(listen.group(1))}]
    assert nginx["readinessProbe"]["grpc"]["port"] == int(listen.group(1))
    assert resource("Service", "layerlens")["spec"]["ports"][0]["targetPort"] == "grpc"
    command = nginx["command"]
    assert command[command.index("-c") + 1] == f"{nginx['volumeMounts'][0]['mountPath']}/{NGINX_CONF.name}"


def test_the_nginx_configmap_is_the_template_verbatim():
    configmap = resource("ConfigMap", "layerlens-nginx")
    assert configmap["data"][NGINX_CONF.name] == NGINX_CONF.read_text(), (
        "deploy/kubernetes/nginx.yaml's ConfigMap differs from deploy/nginx/layerlens.conf; copy the file into it"
    )
    text = NGINX_CONF.read_text()
    assert "hash $http_x_layerlens_model consistent;" in text
    assert "grpc_pass grpc://layerlens;" in text


def ensure_nginx():
    """nginx's path, installed with apt when missing and we are root; None (the test
    skips, saying why) only off CI, where it cannot be installed."""
    found = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.path.exists(path)), None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "nginx"]
        if subprocess.run(install, env=environment, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=environment, timeout=600)
            subprocess.run(install, env=environment, timeout=600)
        found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if found:
            return found
    why = "nginx is not installed and cannot be installed here (needs root and apt-get: apt-get install -y nginx)"
    assert "CI" not in os.environ, why
    return None


def test_nginx_accepts_the_configuration(tmp_path):
    nginx = ensure_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed and cannot be installed here (needs root and apt-get: apt-get install -y nginx)")
    # `nginx -t` resolves upstream names, and the cluster's Service names do not resolve
    # here: they become loopback addresses. The listen port moves to loopback too.
    text, servers = re.subn(r"server layerlensd-(\d+):7533", lambda match: f"server 127.0.0.1:{7533 + int(match.group(1))}", NGINX_CONF.read_text())
    text, listens = re.subn(r"listen 8080 ", "listen 127.0.0.1:8080 ", text)
    assert (servers, listens) == (3, 1)
    conf = tmp_path / "layerlens.conf"
    conf.write_text(text)
    tmp_path.chmod(0o755)  # nginx's workers may run as another user when we are root
    checked = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", "stderr"], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, f"nginx -t refused deploy/nginx/layerlens.conf:\n{checked.stderr}"
    assert "test is successful" in checked.stderr
    # Nothing nginx complains about (obsolete directives warn but pass).
    assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr
