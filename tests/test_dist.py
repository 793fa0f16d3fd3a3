"""The distribution: a wheel built from the files a release ships, installed in a fresh virtualenv (nothing imported
from this checkout), checks every shipped config and serves; and the Docker image's layout reproduced without
Docker (that wheel, a non-root user, a read-only config folder, a writable data folder), with the Dockerfile read
so that the image and this test use the same files and the same command."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.settings import load_config
from tests.support import free_port
from tests.test_examples import dummy_env

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


@dataclass(frozen=True)
class Instruction:
    stage: int
    name: str  # upper case: FROM, COPY, RUN...
    args: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each with the build stage it belongs to."""
    out: list[Instruction] = []
    stage, pending = -1, ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        name, _, args = (pending + line).strip().partition(" ")
        pending = ""
        if name.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, name.upper(), args.strip()))
    return out


def final(name: str) -> list[str]:
    instructions = dockerfile()
    last = instructions[-1].stage
    return [i.args for i in instructions if i.stage == last and i.name == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec form (a JSON list), not {args!r}"
    return [str(v) for v in value]


def world_runnable(path: Path) -> bool:
    """The file and every folder above it can be reached by any user (the non-root run needs its interpreter)."""
    path = path.resolve()
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def base_interpreter() -> str:
    """A Python 3.11+ every user can run: the venv must work for the unprivileged user too (pyenv under /root
    does not)."""
    base = getattr(sys, "_base_executable", sys.executable)
    for candidate in (base, shutil.which("python3.11"), shutil.which("python3"), "/usr/bin/python3"):
        if candidate and Path(candidate).exists() and world_runnable(Path(candidate)):
            probe = subprocess.run([candidate, "-c", "import sys, venv; assert sys.version_info >= (3, 11)"],
                                   capture_output=True, timeout=30)
            if probe.returncode == 0:
                return candidate
    return base


@dataclass(frozen=True)
class Installed:
    base: Path  # world-traversable scratch folder, removed at the end of the session
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a machine with only the wheel installed: no PYTHONPATH, no checkout venv."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    """Build the wheel from the files the Dockerfile's build stage copies, install it in a fresh venv (no system
    site-packages; dependencies from the index pip is configured with). Once per session."""
    base = Path(tempfile.mkdtemp(prefix="hub-dist-"))
    try:
        base.chmod(0o755)
        src = base / "src"
        src.mkdir()
        build_stage = [i for i in dockerfile() if i.stage == 0 and i.name == "COPY"]
        assert build_stage, "the Dockerfile's build stage copies nothing"
        for copy in build_stage:
            *sources, dest = shlex.split(copy.args)
            for name in sources:
                origin, target = ROOT / name, src / (name if dest.rstrip("/") in (".", "") else dest.removeprefix("./"))
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(origin, target)
        wheels = base / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                       check=True, capture_output=True, timeout=180, cwd=base)
        (wheel,) = wheels.glob("findings_hub-*.whl")
        venv = base / "venv"
        subprocess.run([base_interpreter(), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", str(wheel)],
                       check=True, capture_output=True, timeout=300, cwd=base)
        yield Installed(base, wheel, venv)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hub serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"hub serve did not become healthy:\n{log.read_text()}")


def wait_delivered(path: Path, timeout: float = 20.0) -> dict[str, object]:
    """The first line the file target appended, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return dict(json.loads(path.read_text().splitlines()[0]))
        time.sleep(0.1)
    raise AssertionError(f"nothing was delivered to {path}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_dockerfile_installs_the_wheel_as_a_non_root_user_with_config_and_data_apart():
    """What the non-root test below relies on is what the image does (the two cannot drift)."""
    runs = " ".join(final("RUN"))
    assert re.search(r"pip install [^&]*\.whl", runs), "the image must install the built wheel"
    assert not re.search(r"pip install[^&]* (-e|--editable)\b", runs), "an editable install needs the checkout"
    assert not any("pyproject.toml" in c or re.search(r"(^| )(hub|connectors)( |$)", c) for c in final("COPY")), \
        "the final image should hold the installed wheel, not the sources"
    (user,) = final("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert f"chown {user}:{user} /data" in runs and "/etc/hub" in runs
    assert not re.search(r"(chown|chmod)[^&]*/etc/hub( |$)", runs), \
        "/etc/hub must stay root's: the hub reads its config, never writes it"
    assert final("WORKDIR") == ["/data"] and final("VOLUME") == ['["/data"]']
    assert ["docker/hub.yaml", "/etc/hub/hub.yaml"] in [shlex.split(c) for c in final("COPY")]
    (entry,), (cmd,) = final("ENTRYPOINT"), final("CMD")
    argv = exec_form(entry) + exec_form(cmd)
    assert argv[:2] == ["hub", "serve"] and argv[argv.index("--config") + 1] == "/etc/hub/hub.yaml"
    (expose,) = final("EXPOSE")
    assert argv[argv.index("--port") + 1] == expose
    (health,) = final("HEALTHCHECK")
    assert f"127.0.0.1:{expose}/healthz" in health


def test_baked_config_keeps_everything_it_writes_under_data():
    config = load_config(ROOT / "docker" / "hub.yaml", {})
    assert str(config.storage.path).startswith("/data/")
    files = [c for c in config.targets.values() if c.type == "file"]
    assert files, "the default config delivers to a file under /data, so that a first send-test shows the flow"
    for cfg in files:
        assert str(getattr(cfg, "path", "")).startswith("/data/"), cfg


def test_readme_docker_lines_match_the_dockerfile():
    readme = (ROOT / "README.md").read_text()
    build = re.search(r"docker build -t (\S+) \.", readme)
    assert build, "the README says how to build the image"
    image = build.group(1)
    runs = re.findall(r"docker run [^`\n]*", readme)
    assert runs, "the README says how to run it"
    (expose,) = final("EXPOSE")
    for line in runs:
        args = shlex.split(line)
        assert image in args, line
        assert f"{expose}" in " ".join(a for i, a in enumerate(args) if args[i - 1] == "-p"), line
        volumes = [args[i + 1] for i, a in enumerate(args) if a == "-v"]
        assert any(v.split(":")[1] == "/data" for v in volumes), f"{line}: the store needs the /data volume"
        for v in volumes:
            parts = v.split(":")
            assert parts[1] == "/data" or (parts[1].startswith("/etc/hub") and parts[-1] == "ro"), \
                f"{line}: {v} (config goes read-only under /etc/hub, everything written under /data)"
    argv = exec_form(final("CMD")[0])
    config = argv[argv.index("--config") + 1]
    execs = re.findall(r"docker exec \S+ (hub [^`\n]*)", readme)
    assert execs, "the README shows a first command against the running container"
    for line in execs:
        args = shlex.split(line)
        assert args[args.index("--config") + 1] == config, line


@pytest.mark.slow
def test_installed_wheel_checks_every_example_and_serves(installed, tmp_path):
    where = subprocess.run([str(installed.bin / "python"), "-c", "import hub, connectors; print(hub.__file__)"],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path, env=installed.env())
    assert where.stdout.startswith(str(installed.venv)), where.stdout + where.stderr

    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "examples", configs)
    shutil.copy2(ROOT / "config.example.yaml", configs)
    for path in sorted(configs.glob("*.yaml")):
        extra = {} if path.name == "config.example.yaml" else dummy_env(path.read_text())
        out = subprocess.run([str(installed.bin / "hub"), "check-config", str(path)], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path, env=installed.env(**extra))
        assert out.returncode == 0, f"{path.name}: {out.stdout}{out.stderr}"

    names = set(zipfile.ZipFile(installed.wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for folder in ("builtin_mappings", "ui")
               for p in (ROOT / "hub" / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and not shipped - names, f"the wheel lacks {sorted(shipped - names)[:5]}"

    port, log = free_port(), tmp_path / "serve.log"
    config = configs / "config.example.yaml"
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(installed.bin / "hub"), "serve", "--config", str(config), "--port", str(port)],
                                stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path, env=installed.env())
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        login = httpx.get(f"http://127.0.0.1:{port}/ui/login", timeout=10)  # the console's templates are installed
        assert login.status_code == 200 and 'name="token"' in login.text, login.text[:300]
        sent = subprocess.run([str(installed.bin / "hub"), "send-test", "--config", str(config), "--source",
                               "secureendpoint", "--url", f"http://127.0.0.1:{port}/hooks/secureendpoint"],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path, env=installed.env())
        assert sent.returncode == 0 and "-> 202" in sent.stdout, sent.stdout + sent.stderr
        line = wait_delivered(configs / "out" / "findings.ndjson")
        assert line["type"] == "finding.created", line
    finally:
        stop(proc)


@pytest.mark.slow
def test_image_layout_serves_as_non_root_from_a_read_only_config(installed):
    """/etc/hub read-only and root's, /data the user's own, the Dockerfile's config, working folder and command."""
    as_root = os.geteuid() == 0
    image = Path(tempfile.mkdtemp(prefix="image-", dir=installed.base))
    image.chmod(0o755)
    etc_hub, data = image / "etc" / "hub", image / "data"
    etc_hub.mkdir(parents=True)
    (copy,) = [shlex.split(c) for c in final("COPY") if c.endswith("/etc/hub/hub.yaml")]
    shutil.copyfile(ROOT / copy[0], etc_hub / "hub.yaml")
    (etc_hub / "hub.yaml").chmod(0o444)
    etc_hub.chmod(0o555)
    data.mkdir(mode=0o750)
    if as_root:
        os.chown(data, NOBODY, NOBODY)
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_root else {}

    port = free_port()
    argv = exec_form(final("ENTRYPOINT")[0]) + exec_form(final("CMD")[0])
    argv = [str(installed.bin / argv[0]), *(a.replace("/etc/hub", str(etc_hub)) for a in argv[1:])]
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"  # tests listen on loopback only
    (workdir,) = final("WORKDIR")
    env = installed.env(HUB_DATA_DIR=str(data), HOME=str(data), PYTHONDONTWRITEBYTECODE="1")
    log = installed.base / f"image-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                cwd=str(data) if workdir == "/data" else workdir, **user)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log)
        (health,) = final("HEALTHCHECK")
        check = exec_form(health[health.index("CMD ") + 4:])
        check = [str(installed.bin / check[0]), *(a.replace(":8080/", f":{port}/") for a in check[1:])]
        assert subprocess.run(check, timeout=10, env=env, **user).returncode == 0
        sent = subprocess.run([str(installed.bin / "hub"), "send-test", "--config", str(etc_hub / "hub.yaml"),
                               "--source", "secureendpoint", "--url", f"http://127.0.0.1:{port}/hooks/secureendpoint"],
                              capture_output=True, text=True, timeout=30, env=env, cwd=data, **user)
        assert sent.returncode == 0 and "-> 202" in sent.stdout, sent.stdout + sent.stderr
        line = wait_delivered(data / "out" / "findings.ndjson")
        assert line["type"] == "finding.created", line
    finally:
        stop(proc)
    assert proc.returncode in (0, -15), log.read_text()
    assert sorted(p.name for p in etc_hub.iterdir()) == ["hub.yaml"], "the hub wrote into its config folder"
    written = {p.relative_to(image).as_posix() for p in image.rglob("*")} - {"etc", "etc/hub", "etc/hub/hub.yaml"}
    assert "data/hub.db" in written and "data/out/findings.ndjson" in written
    assert all(w.startswith("data") for w in written), sorted(written)
    if as_root:
        assert all((image / w).stat().st_uid == NOBODY for w in written), "files the hub made belong to its user"


def test_compose_runs_two_hubs_of_this_image_on_one_postgres():
    """compose.yaml: PostgreSQL and two hubs built from this Dockerfile, each with its own /data and the same
    database URL, which the image's baked config turns into the PostgreSQL store."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:15")
    hubs = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(hubs) == 2
    urls = {s["environment"]["HUB_DATABASE_URL"] for s in hubs.values()}
    assert len(urls) == 1 and "@db:5432/" in next(iter(urls))
    assert len({tuple(s["volumes"]) for s in hubs.values()}) == 2  # file output and logs apart, the store shared
    assert all(s["depends_on"]["db"]["condition"] == "service_healthy" for s in hubs.values())
    url = next(iter(urls)).replace("${POSTGRES_PASSWORD:-hub-demo-password}", "pw")
    config = load_config(ROOT / "docker" / "hub.yaml", {"HUB_DATABASE_URL": url})
    assert config.store_location == url
    assert load_config(ROOT / "docker" / "hub.yaml", {}).store_location == Path("/data/hub.db")
