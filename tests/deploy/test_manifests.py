"""The container image and the Kubernetes manifests, checked offline.

Every overlay in deploy/kubernetes/overlays is rendered with ``kubectl kustomize``,
validated against the Kubernetes API schemas (``kubernetes-validate --strict``, no
cluster needed) and then read as objects: what docs/deploy.md promises about them is
asserted here. The Dockerfile cannot be built on a machine without Docker; it is parsed.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rexec import config as configuration
from rexec.web.settings import WebSettings, env_name

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
DOCKERFILE = ROOT / "Dockerfile"
#: The Kubernetes version the manifests are validated against (the oldest they target).
KUBERNETES_VERSION = "1.30.0"

WEB = {"app.kubernetes.io/name": "rexec-web", "app.kubernetes.io/component": "web"}
COMPUTE = {"app.kubernetes.io/name": "rexec-compute", "app.kubernetes.io/component": "compute"}
QAP_PORT = configuration.load()["server.port"]
WEB_PORT = WebSettings().port
#: What the compute node needs after SIGTERM besides server.shutdown_grace: the
#: template's exit (up to 10 s) and the shells' (2 s), see Pool.stop.
STOP_MARGIN = 12


# -- rendering ------------------------------------------------------------------


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: it renders the kustomize overlays")
    path = KUBERNETES / "overlays" / overlay
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"kubectl kustomize {path}:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    return _render(request.param)


def of_kind(objects, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector (the only kind used here) selects ``labels``."""
    assert set(selector) <= {"matchLabels"}, f"unexpected selector {selector}"
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def workloads(objects) -> Iterator[dict[str, Any]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def web(objects) -> dict[str, Any]:
    return one(objects, "Deployment", "rexec-web")


def compute(objects) -> dict[str, Any]:
    return one(objects, "StatefulSet", "rexec-compute")


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(workload) if c["name"] == name]
    return found


def port_number(c: dict[str, Any], port: int | str) -> int:
    """A probe's or a Service's target port, resolved against the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    return number


def quantity(text: str | int) -> Fraction:
    """A Kubernetes resource quantity (``2Gi``, ``512Mi``, ``250m``, ``1``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?", str(text))
    assert match, f"unsupported quantity {text!r}"
    factor = {
        None: 1,
        "m": Fraction(1, 1000),
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }[match[2]]
    return Fraction(match[1]) * factor


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(NAME) expansion in command and args (``$$`` is a literal ``$``,
    unknown names stay as written), as k8s.io/kubernetes third_party expansion.Expand."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
            out.append("$" + following)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def references(text: str) -> list[str]:
    """The $(NAME) references Kubernetes would expand in ``text``."""
    return re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text.replace("$$", ""))


def env_values(c: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment as the kubelet would set it: Downward API resource
    fields from the container's limits, Secret references as placeholders."""
    values = {}
    for var in c.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, _, resource = ref["resource"].partition(".")
            amount = quantity(c["resources"][kind][resource])
            divisor = quantity(ref.get("divisor", 1))
            values[var["name"]] = str(math.ceil(amount / divisor))  # the kubelet rounds up
        elif "fieldRef" in source:
            values[var["name"]] = f"field-{source['fieldRef']['fieldPath']}"
        else:
            values[var["name"]] = f"placeholder-{var['name'].lower()}"
    values.update(overrides or {})
    return values


def run_command(c: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run a container's ``sh -c`` command here with ``rexec`` replaced by a stub that
    records its arguments; returns the exit code and those arguments."""
    argv = [expand(part, env) for part in c["command"]]
    if Path(argv[0]).name == "tini":
        assert argv[1] == "--", argv
        argv = argv[2:]
    assert argv[:2] == ["/bin/sh", "-c"], f"{c['name']}: expected an sh -c command: {argv}"
    stub = tmp_path / "bin" / "rexec"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$STUB_ARGV"\n')
    stub.chmod(0o755)
    record = tmp_path / "argv"
    record.unlink(missing_ok=True)
    path = f"{stub.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run(
        ["/bin/sh", "-c", argv[2]],
        env={**env, "PATH": path, "STUB_ARGV": str(record)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    recorded = record.read_text().split("\0")[:-1] if record.exists() else []
    return done.returncode, recorded


def flag(args: list[str], name: str) -> list[str]:
    """The values of ``--name=value`` and ``--name value`` in ``args``."""
    found = []
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            found.append(arg.split("=", 1)[1])
        elif arg == f"--{name}" and i + 1 < len(args):
            found.append(args[i + 1])
    return found


def compute_toml_text(objects) -> str:
    """The compute node's rexec.toml, from the ConfigMap the StatefulSet mounts."""
    sts = compute(objects)
    (volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    return config_map["data"]["rexec.toml"]


def compute_toml(objects) -> dict[str, Any]:
    return tomllib.loads(compute_toml_text(objects))


def compute_config(objects, tmp_path: Path, **env: str) -> configuration.Config:
    """The compute node's configuration as rexec loads it in the pod: its rexec.toml and
    its container's REXEC_* variables (``env`` changes some)."""
    local = tmp_path / "rexec.toml"
    local.write_text(compute_toml_text(objects))
    c = container(compute(objects), "compute")
    return configuration.load(local, environ={**env_values(c), **env})


def pool_max_of_compute(objects, tmp_path: Path, memory: int | None = None) -> int:
    """pool.max as rexec sizes it in the compute container under its memory limit (or
    ``memory`` bytes), by rexec's own sizing."""
    from rexec.compute.supervisor.sizing import fit

    c = container(compute(objects), "compute")
    limit = int(quantity(c["resources"]["limits"]["memory"])) if memory is None else memory
    return fit(limit, compute_config(objects, tmp_path))


def mounted_file(workload: dict[str, Any], c: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume that holds ``path`` in container ``c`` (and the file's name in it)."""
    file = Path(path)
    (mount,) = [m for m in c.get("volumeMounts", []) if file.parent == Path(m["mountPath"])]
    (volume,) = [
        v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    return {**volume, "file": file.name, "readOnly": mount.get("readOnly", False)}


def secret_file(workload: dict[str, Any], c: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret name without kustomize's hash, key) of the Secret file at ``path``."""
    volume = mounted_file(workload, c, path)
    assert "secret" in volume, f"{path} is not from a Secret"
    (item,) = [i for i in volume["secret"]["items"] if i["path"] == volume["file"]]
    return unhashed(volume["secret"]["secretName"]), item["key"]


def unhashed(name: str) -> str:
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def web_toml(objects, tmp_path: Path) -> dict[str, Any]:
    """The web node's web.toml, from the ConfigMap its --config names, read by rexec's own
    reader (an unknown key or a wrong type fails here), by attribute name."""
    from rexec.web.settings import read_web_toml

    deployment = web(objects)
    c = container(deployment, "web")
    (path,) = flag(c["args"], "config")
    volume = mounted_file(deployment, c, path)
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert volume["file"] in config_map["data"], f"the ConfigMap has no {volume['file']}"
    local = tmp_path / "web.toml"
    local.write_text(config_map["data"][volume["file"]])
    return read_web_toml(local)


def register_args(objects) -> list[str]:
    """The register container's rexec command line, $(NAME)s expanded for pod 0."""
    sts = compute(objects)
    c = container(sts, "register")
    pod = f"{sts['metadata']['name']}-0"
    env = env_values(c, {"POD_NAME": pod})
    assert env_values(c)["POD_NAME"] == "field-metadata.name"
    return [expand(a, env) for a in c["args"]]


# -- schema -------------------------------------------------------------------------


def test_every_overlay_is_there():
    assert {"dev", "production"} <= set(OVERLAYS)


def test_objects_are_valid_kubernetes_strictly(objects):
    errors = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{o['kind']} {o['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_an_unknown_field(objects):
    """The validator is not vacuous: a misspelt field (``replica``) is an error."""
    deployment = json.loads(json.dumps(web(objects)))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_command_line_validates_the_rendered_overlay(objects, tmp_path):
    """What docs/deploy.md tells people to run: the CLI on kubectl's output."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    cli = ROOT / ".venv" / "bin" / "kubernetes-validate"
    if not cli.exists():
        pytest.skip(f"{cli} is missing")
    done = subprocess.run(
        [str(cli), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- web nodes ------------------------------------------------------------------------


def test_web_nodes_are_a_deployment_of_two_or_more(objects):
    deployment = web(objects)
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)
    assert all(labels.get(k) == v for k, v in WEB.items())


def test_web_probes_use_a_path_that_needs_no_login(objects):
    """Both probes are HTTP GETs on the web port, on a path the web node answers 200
    without a token (GET /status needs one: a probe there would never pass)."""
    from fastapi.testclient import TestClient

    from rexec.web.app import create_app

    c = container(web(objects), "web")
    app = TestClient(create_app(WebSettings(database_url="sqlite://")))
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in c, f"web container has no {probe}"
        get = c[probe]["httpGet"]
        assert port_number(c, get["port"]) == WEB_PORT
        assert app.get(get["path"]).status_code == 200, f"{probe}: GET {get['path']}"
    assert app.get("/status").status_code == 401  # the reason for not probing it
    # readiness says whether work can be served; liveness only that the process answers
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_web_listens_on_its_container_port(objects, tmp_path):
    c = container(web(objects), "web")
    values = web_toml(objects, tmp_path)
    assert (values["host"], values["port"]) == ("0.0.0.0", WEB_PORT)
    assert [p["containerPort"] for p in c["ports"]] == [WEB_PORT]
    assert c["args"][0] == "web" and not flag(c["args"], "port") and not flag(c["args"], "host")


def test_web_nodes_use_web_toml_and_their_secrets(objects, tmp_path):
    """`rexec web --config`: the settings in a ConfigMap, the secrets in Secrets (the
    token key and the node secret as REXEC_WEB_* variables, the registration token as a
    file); no compute node or login on the command line."""
    deployment = web(objects)
    c = container(deployment, "web")
    assert [a.split("=")[0] for a in c["args"]] == ["web", "--config"], c["args"]
    values = web_toml(objects, tmp_path)
    token_file = values.pop("registration_token_file")
    WebSettings(**values)  # the file's values make settings
    assert secret_file(deployment, c, token_file) == ("rexec-registration", "token")
    env = {v["name"]: v.get("valueFrom", {}).get("secretKeyRef") for v in c["env"]}
    for variable, key in (
        ("REXEC_WEB_JWT_SECRET", "jwt-secret"),
        ("REXEC_WEB_NODE_SECRET", "node-secret"),
        ("REXEC_WEB_DATABASE_URL", "url"),
    ):
        assert env[variable] and env[variable]["key"] == key, variable
    known = {env_name(f) for f in dataclasses.fields(WebSettings)}
    assert set(env) - {"REXEC_ADMIN_PASSWORD"} <= known, "a variable the web node ignores"


def test_web_service_has_no_session_affinity(objects):
    service = one(objects, "Service", "rexec-web")
    assert service["spec"].get("sessionAffinity", "None") != "ClientIP"
    assert selects({"matchLabels": service["spec"]["selector"]}, WEB)
    c = container(web(objects), "web")
    assert [port_number(c, p["targetPort"]) for p in service["spec"]["ports"]] == [WEB_PORT]


def test_ingress_routes_to_the_web_service(objects):
    (ingress,) = of_kind(objects, "Ingress")
    service = one(objects, "Service", "rexec-web")
    names = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "rexec-web"
            assert backend["port"].get("name") in names or backend["port"].get("number") in {
                p["port"] for p in service["spec"]["ports"]
            }


def test_web_pods_get_no_service_link_variables(objects):
    """Kubernetes would set REXEC_WEB_PORT=tcp://... for the Service rexec-web, which the
    web node reads as its port (WebSettings.with_env) and fails on."""
    service = one(objects, "Service", "rexec-web")
    link_prefix = service["metadata"]["name"].upper().replace("-", "_") + "_"
    assert link_prefix == "REXEC_WEB_"  # what WebSettings.with_env reads: links must be off
    assert web(objects)["spec"]["template"]["spec"].get("enableServiceLinks") is False
    with pytest.raises(ValueError):
        WebSettings().with_env({"REXEC_WEB_PORT": "tcp://10.0.0.1:12800"})


def test_web_nodes_list_no_compute_pod_they_register_themselves(objects, tmp_path):
    """Every compute pod registers itself under its stable DNS name (the headless
    Service's), so the web nodes list none (and scaling the StatefulSet is all there is
    to scaling): not in web.toml, not as flags; nor a --pool-max to keep in step."""
    assert web_toml(objects, tmp_path)["compute_nodes"] == ()
    args = container(web(objects), "web")["args"]
    for name in ("compute", "pool-max", "compute-user", "compute-password"):
        assert not flag(args, name), name
    sts = compute(objects)
    argv = register_args(objects)
    assert argv[0] == "register"
    (host,) = flag(argv, "host")
    assert host == f"{sts['metadata']['name']}-0.{sts['spec']['serviceName']}"
    service = one(objects, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"  # pod-0's name resolves to pod-0
    # the port it registers is the node's QAP port, which the Service and container expose
    assert compute_toml(objects)["server"]["port"] == QAP_PORT
    assert "register" not in compute_toml(objects)  # the node does not register itself


def test_compute_pods_register_with_every_web_pod_ready_or_not(objects):
    """A web node is not ready until a compute node takes work: the register container
    reaches the web pods through a Service that publishes not-ready addresses."""
    from urllib.parse import urlsplit

    (url,) = flag(register_args(objects), "url")
    parts = urlsplit(url)
    service = one(objects, "Service", parts.hostname)
    assert service["spec"].get("publishNotReadyAddresses") is True
    assert selects({"matchLabels": service["spec"]["selector"]}, WEB)
    c = container(web(objects), "web")
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == parts.port]
    assert port_number(c, port["targetPort"]) == WEB_PORT
    assert not of_kind(objects, "Ingress") or all(
        path["backend"]["service"]["name"] != service["metadata"]["name"]
        for ingress in of_kind(objects, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ), "the internal Service is not for clients"


def test_register_holds_the_token_and_the_login_the_web_nodes_expect(objects, tmp_path):
    """The register container's token is the web nodes' (one Secret), its login is the
    one the init container writes into the node's users file (one Secret)."""
    sts = compute(objects)
    c = container(sts, "register")
    argv = register_args(objects)
    (token_file,) = flag(argv, "token-file")
    web_token = web_toml(objects, tmp_path)["registration_token_file"]
    assert secret_file(sts, c, token_file) == secret_file(
        web(objects), container(web(objects), "web"), web_token
    )
    init = container(sts, "users-file")
    init_env = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in init["env"]}
    (password_file,) = flag(argv, "password-file")
    assert secret_file(sts, c, password_file) == (
        unhashed(init_env["COMPUTE_PASSWORD"]["name"]),
        init_env["COMPUTE_PASSWORD"]["key"],
    )
    (user,) = flag(c["args"], "user")
    (variable,) = references(user)
    (var,) = [v for v in c["env"] if v["name"] == variable]
    assert var["valueFrom"]["secretKeyRef"] == init_env["COMPUTE_USER"]
    (config,) = flag(argv, "config")
    assert "configMap" in mounted_file(sts, c, config)  # the node's own rexec.toml


def test_register_reads_pool_max_from_the_nodes_readyz(objects, tmp_path):
    """Not a number kept in step: `rexec register` asks the node's /readyz, on the
    metrics port the compute container exposes (and its probes use)."""
    from urllib.parse import urlsplit

    from rexec.compute.supervisor.register import ready_url

    local = tmp_path / "rexec.toml"
    sts = compute(objects)
    config_map = one(
        objects,
        "ConfigMap",
        mounted_file(sts, container(sts, "register"), "/etc/rexec/rexec.toml")["configMap"]["name"],
    )
    local.write_text(config_map["data"]["rexec.toml"])
    url = urlsplit(ready_url(configuration.load(local)))
    assert url.hostname == "127.0.0.1" and url.path == "/readyz"  # the pod's loopback
    c = container(sts, "compute")
    assert url.port == port_number(c, "metrics")
    assert not flag(register_args(objects), "ready-url")


# -- compute nodes --------------------------------------------------------------------


def test_compute_nodes_are_a_statefulset_behind_a_headless_service(objects):
    sts = compute(objects)
    service = one(objects, "Service", sts["spec"]["serviceName"])
    assert service["spec"].get("clusterIP") == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert selects(sts["spec"]["selector"], labels)
    assert all(labels.get(k) == v for k, v in COMPUTE.items())
    c = container(sts, "compute")
    assert [port_number(c, p["targetPort"]) for p in service["spec"]["ports"]] == [QAP_PORT]


def test_compute_probes_are_http_on_the_metrics_port(objects):
    """/readyz (pool up, taking connections) for start-up and readiness, /healthz (the
    supervisor serves) for liveness, on metrics.port, which listens beyond loopback so
    that the kubelet reaches it."""
    c = container(compute(objects), "compute")
    metrics = compute_toml(objects)["metrics"]
    assert metrics["host"] == "0.0.0.0"
    paths = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in paths.items():
        assert probe in c, f"compute container has no {probe}"
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert port_number(c, get["port"]) == metrics["port"]


def test_compute_drain_fits_in_the_grace_period(objects):
    """preStop, then SIGTERM: the node gives running requests server.shutdown_grace and
    needs a little more to stop; Kubernetes must not SIGKILL it before."""
    spec = compute(objects)["spec"]["template"]["spec"]
    c = container(compute(objects), "compute")
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert Path(command[0]).name == "sleep", command
    pre_stop = float(command[1])
    grace = compute_toml(objects)["server"]["shutdown_grace"]
    assert grace > 0
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + grace + STOP_MARGIN


def test_the_node_is_drained_in_the_registry_before_its_listeners_close(objects):
    """The register container gets SIGTERM when the pod is deleted (no preStop of its
    own) and drains the node then (DRAIN_TIMEOUT at most); the web nodes take it up at
    their next refresh (nodes.check_interval). Both within the compute container's
    preStop, before SIGTERM closes the node's listeners."""
    from rexec.compute.supervisor.register import DRAIN_TIMEOUT

    c = container(compute(objects), "compute")
    register = container(compute(objects), "register")
    assert "lifecycle" not in register
    argv = register_args(objects)
    assert argv[0] == "register" and "--drain" not in argv
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert DRAIN_TIMEOUT + WebSettings().node_check_interval <= pre_stop


def test_compute_configuration_is_valid_and_remote_with_a_users_file(objects, tmp_path):
    """rexec itself loads the file (an unknown key or a wrong type fails here), listens
    beyond loopback, with authentication and a users file that the init container writes
    into a volume the compute container mounts."""
    sts = compute(objects)
    c = container(sts, "compute")
    (volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert "command" not in c  # the image's entrypoint: tini, then rexec
    argv = [expand(a, env_values(c)) for a in c["args"]]
    assert argv[0] == "serve"
    (config_path,) = map(Path, flag(argv, "config"))
    assert config_path.parent == Path(mount["mountPath"])
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert config_path.name in config_map["data"], f"the ConfigMap has no {config_path.name}"
    local = tmp_path / "rexec.toml"
    local.write_text(config_map["data"][config_path.name])
    loaded = configuration.load(local)  # ConfigError on an unknown key or a wrong type
    assert loaded["server.remote"] is True and loaded["auth.required"] is True
    users = Path(loaded["auth.users_file"])
    (users_mount,) = [m for m in c["volumeMounts"] if users.is_relative_to(m["mountPath"])]
    init = sts["spec"]["template"]["spec"]["initContainers"]
    writers = [
        i
        for i in init
        if any(
            m["name"] == users_mount["name"] and not m.get("readOnly")
            for m in i.get("volumeMounts", [])
        )
    ]
    assert writers, "no init container writes the users file's volume"


def test_the_init_container_writes_the_users_file_with_rexec(objects, tmp_path):
    sts = compute(objects)
    users_file = compute_toml(objects)["auth"]["users_file"]
    (init,) = sts["spec"]["template"]["spec"]["initContainers"]
    code, argv = run_command(init, tmp_path, env_values(init))
    assert code == 0
    assert argv[:2] == ["users", "add"]
    assert flag(argv, "file") == [users_file]
    assert flag(argv, "password") == ["placeholder-compute_password"]


def test_pool_size_follows_the_memory_limit(objects, tmp_path):
    """rexec sizes the pool itself (pool.memory_per_shell from the container's REXEC_
    variables, the limit from its control group): no pool.max anywhere to keep in step."""
    c = container(compute(objects), "compute")
    assert "memory" in c["resources"]["limits"], "without a limit the node's memory is used"
    loaded = compute_config(objects, tmp_path)
    assert loaded["pool.memory_per_shell"] > 0
    assert "pool.max" not in loaded.explicit and not flag(c.get("args", []), "pool-max")
    pool_max = pool_max_of_compute(objects, tmp_path)
    assert pool_max >= compute_toml(objects)["pool"]["initial"]
    limit = int(quantity(c["resources"]["limits"]["memory"]))
    # Twice the memory, more shells; too little for one shell, no start at all.
    assert pool_max_of_compute(objects, tmp_path, memory=2 * limit) > pool_max
    with pytest.raises(RuntimeError, match="leaves no room for one"):
        pool_max_of_compute(objects, tmp_path, memory=loaded["pool.memory_reserved"])


def test_shell_threads_follow_the_cpu_limit(objects, tmp_path):
    """shell.threads 0 (the CPUs rexec may use, its control group's quota, over
    pool.max): a CPU limit, so that a shell does not start a thread per node core."""
    c = container(compute(objects), "compute")
    assert "cpu" in c["resources"]["limits"]
    assert compute_config(objects, tmp_path)["shell.threads"] == 0


def test_network_policy_lets_only_web_pods_reach_qap(objects):
    compute_labels = compute(objects)["spec"]["template"]["metadata"]["labels"]
    web_labels = web(objects)["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], compute_labels)
    ]
    assert len(policies) == 1, "one NetworkPolicy selects the compute pods"
    spec = policies[0]["spec"]
    assert "Ingress" in spec["policyTypes"]
    assert spec["ingress"], "an empty ingress list would let nobody in; none would let all in"
    for rule in spec["ingress"]:
        assert rule.get("from"), "a rule without 'from' admits every source"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, f"only pods of this namespace: {peer}"
            assert selects(peer["podSelector"], web_labels)
            assert not selects(peer["podSelector"], compute_labels)
        assert rule.get("ports") == [{"protocol": "TCP", "port": QAP_PORT}]


# -- security -------------------------------------------------------------------------


def _dockerfile_uid() -> int:
    (user,) = [args for instr, args in _final_stage() if instr == "USER"][-1:]
    return int(user.split(":")[0])


def test_every_container_runs_as_non_root_without_privileges(objects):
    problems = []
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        for c in containers(workload):
            context = {**pod_context, **c.get("securityContext", {})}
            where = f"{workload['metadata']['name']}/{c['name']}"
            if context.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if context.get("runAsUser", 1) == 0:
                problems.append(f"{where}: runAsUser 0")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in c.get("securityContext", {}).get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities are not all dropped")
            if c.get("securityContext", {}).get("privileged"):
                problems.append(f"{where}: privileged")
            if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root file system is writable")
    assert not problems, "\n".join(problems)


def test_rexec_pods_run_as_the_image_user(objects):
    uid = _dockerfile_uid()
    assert uid != 0
    for workload in (web(objects), compute(objects)):
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_no_pod_gets_a_service_account_token(objects):
    for workload in workloads(objects):
        spec = workload["spec"]["template"]["spec"]
        assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|_KEY$")
SECRET_KEY = re.compile(r"password|secret|token|url|key", re.IGNORECASE)


def test_secrets_are_referenced_never_written_in_clear(objects):
    problems = []
    for workload in workloads(objects):
        for c in containers(workload):
            for var in c.get("env", []):
                if SECRET_NAME.search(var["name"]) and "secretKeyRef" not in var.get(
                    "valueFrom", {}
                ):
                    problems.append(f"{c['name']}: {var['name']} is not from a Secret")
    # No secret value (a user name is none) shows anywhere but in its Secret: not in a
    # ConfigMap, an env value or an argument.
    values = {
        base64.b64decode(v).decode()
        for s in of_kind(objects, "Secret")
        for k, v in s.get("data", {}).items()
        if SECRET_KEY.search(k)
    }
    assert values or not of_kind(objects, "Secret")
    elsewhere = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    problems += [f"a Secret's value is in clear: {v[:6]}..." for v in values if v in elsewhere]
    assert not problems, "\n".join(problems)


def test_secret_references_resolve(objects):
    """In an overlay that makes its Secrets, each reference names one that exists with
    that key; an overlay that makes none (production) expects exactly the Secrets
    docs/deploy.md tells people to create."""
    refs = {
        (var["valueFrom"]["secretKeyRef"]["name"], var["valueFrom"]["secretKeyRef"]["key"])
        for workload in workloads(objects)
        for c in containers(workload)
        for var in c.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    } | {
        (volume["secret"]["secretName"], item["key"])
        for workload in workloads(objects)
        for volume in workload["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in volume
        for item in volume["secret"]["items"]
    }
    assert {
        "rexec-web",
        "rexec-compute-credentials",
        "rexec-database",
        "rexec-registration",
    } <= {unhashed(name) for name, _ in refs}
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    if secrets:
        for name, key in refs:
            assert name in secrets, f"no Secret {name}"
            assert key in secrets[name].get("data", {}), f"Secret {name} has no key {key}"
    else:
        docs = (ROOT / "docs" / "deploy.md").read_text()
        for name, key in refs:
            command = re.search(
                rf"kubectl[^\n]*create secret generic {name}\b(?:[^\n]*\\\n)*[^\n]*", docs
            )
            assert command, f"docs/deploy.md does not create the Secret {name}"
            assert f"--from-literal={key}=" in command[0], f"docs: Secret {name} lacks {key}"


def test_r_code_never_sees_a_secret(objects):
    """The compute container runs R code as the supervisor's user: no Secret in its
    environment (the init container gets the password; the compute one the hashes)."""
    sts = compute(objects)
    c = container(sts, "compute")
    assert not [v for v in c.get("env", []) if "secretKeyRef" in v.get("valueFrom", {})]
    assert "envFrom" not in c
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounted = [volumes[m["name"]] for m in c["volumeMounts"]]
    assert not [v for v in mounted if "secret" in v or "projected" in v], "a Secret in R's reach"


def test_command_references_name_defined_variables(objects):
    """A misspelt $(NAME) stays in the arguments as written (a literal password)."""
    for workload in workloads(objects):
        for c in containers(workload):
            defined = {v["name"] for v in c.get("env", [])}
            for part in c.get("command", []) + c.get("args", []):
                missing = set(references(part)) - defined
                assert not missing, f"{c['name']}: $({', '.join(missing)}) undefined"


def test_flags_exist_in_rexec(objects, tmp_path):
    """Every rexec command line in the manifests parses with rexec's own CLI."""
    import typer.main

    from rexec.cli.main import app

    cli = typer.main.get_command(app)
    command_lines = [
        [expand(a, env_values(c)) for a in c["args"]] for c in [container(web(objects), "web")]
    ]
    for c in containers(compute(objects)):
        if "command" not in c:  # the image's entrypoint: rexec
            command_lines.append([expand(a, env_values(c)) for a in c["args"]])
            continue
        code, argv = run_command(c, tmp_path, env_values(c))
        assert code == 0, c["name"]
        command_lines.append(argv)
    for argv in command_lines:
        group, rest = cli, list(argv)
        while hasattr(group, "commands"):
            group, rest = group.commands[rest[0]], rest[1:]
        group.make_context(argv[0], rest)  # raises on an unknown flag or a bad value


def test_rexec_containers_share_one_image(objects):
    images = {c["image"] for w in (web(objects), compute(objects)) for c in containers(w)}
    assert len(images) == 1, images
    (image,) = images
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not current):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        instruction, _, args = current.strip().partition(" ")
        instructions.append((instruction.upper(), args.strip()))
        current = ""
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    args = {}
    stages: list[list[tuple[str, str]]] = []
    for instr, value in instructions:
        if instr == "ARG" and not stages:
            name, _, default = value.partition("=")
            args[name] = default
            continue
        if instr == "FROM":
            value = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], value)
            stages.append([])
        assert stages, f"{instr} before FROM"
        stages[-1].append((instr, value))
    return stages


def _final_stage() -> list[tuple[str, str]]:
    return _stages()[-1]


PIPE_TO_SHELL = re.compile(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|da|z)?sh\b")


def test_pipe_to_shell_detection_works():
    for bad in ("curl -fsSL https://x.test/i.sh | sh", "wget -qO- u | sudo bash"):
        assert PIPE_TO_SHELL.search(bad)
    assert not PIPE_TO_SHELL.search("curl -o f https://x.test/f && sha256sum -c f.sha256")


def test_dockerfile_bases_are_debian_bookworm():
    for stage in _stages():
        instr, value = stage[0]
        assert instr == "FROM"
        image = value.split()[0]
        assert re.fullmatch(r"debian:bookworm(-slim)?(@sha256:[0-9a-f]{64})?", image), image


def test_dockerfile_runs_as_a_non_root_user():
    users = [value for instr, value in _final_stage() if instr == "USER"]
    assert users, "the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert _dockerfile_uid() > 0


def test_dockerfile_entrypoint_is_tini_then_rexec():
    (entrypoint,) = [json.loads(v) for instr, v in _final_stage() if instr == "ENTRYPOINT"]
    assert Path(entrypoint[0]).name == "tini"
    assert entrypoint[1:] == ["--", "rexec"]
    runs = " ".join(v for instr, v in _final_stage() if instr == "RUN")
    assert re.search(r"apt-get install[^&]*\btini\b", runs), "tini comes from Debian"


def test_dockerfile_installs_r_and_python_from_debian():
    runs = " ".join(v for instr, v in _final_stage() if instr == "RUN")
    for package in (
        "r-base-core",
        "r-cran-rserve",
        "r-cran-jsonlite",
        "libopenblas0-pthread",
        "python3",
    ):
        assert re.search(rf"apt-get install[^&]*\s{re.escape(package)}(\s|$)", runs), package
    build = " ".join(v for stage in _stages() for instr, v in stage if instr == "RUN")
    assert re.search(r"python3 -m venv (\S+)", build)
    venv = re.search(r"python3 -m venv (\S+)", build)[1]
    assert re.search(rf"{re.escape(venv)}/bin/pip install \.", build)


def test_dockerfile_downloads_no_script_into_a_shell():
    for stage in _stages():
        for instr, value in stage:
            assert not PIPE_TO_SHELL.search(value), f"{instr} {value}"
            assert instr != "ADD" or "://" not in value, f"ADD from a URL: {value}"


def test_dockerfile_exposes_the_default_ports():
    exposed = {
        int(port.split("/")[0])
        for instr, value in _final_stage()
        if instr == "EXPOSE"
        for port in value.split()
    }
    assert exposed == {QAP_PORT, WEB_PORT}


def test_dockerignore_keeps_the_build_context_small():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore and "!src/" in ignore and "!pyproject.toml" in ignore


def test_docs_explain_the_kubernetes_layout():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert re.search(r"^## Kubernetes$", docs, re.MULTILINE)
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in docs


def test_every_missing_mark_is_named_and_listed_in_the_docs():
    """Each REXEC-MISSING mark names what is missing, in parentheses, and docs/deploy.md's
    "Not in rexec yet" lists it; what rexec has now is marked nowhere."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    missing = docs.split("### Not in rexec yet", 1)[1].split("\n## ", 1)[0].lower()
    marks = []
    for path in sorted(KUBERNETES.rglob("*")):
        if path.is_file():
            for line in path.read_text().splitlines():
                if "REXEC-MISSING" in line:
                    found = re.search(r"REXEC-MISSING \(([^)]+)\)", line)
                    assert found, f"{path.relative_to(ROOT)}: a mark without a name: {line}"
                    marks.append(found[1].lower())
    for mark in marks:
        assert mark in missing, f"docs/deploy.md does not list {mark!r} as missing"
    done_now = ("self-registration", "drain endpoint", "health endpoint", "--config", "environment")
    for done in done_now:
        assert not [m for m in marks if done in m], done
