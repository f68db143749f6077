"""What scripts/check-deploy asserts on top of the real tools' own checks: facts of the rendered
Kubernetes overlays (as tests/k8s-validate decoded them), the SETPOINT_* variables of the
systemd env files against the binary's own --help, the package's contents, and the Terraform
modules' calls against their declared variables (parsed with python-hcl2). Each command exits
non-zero with every failure named; nothing is skipped.

Usage: check_deploy.py COMMAND ARGS... (see the functions below).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def finish(what: str, checked: int) -> None:
    if failures:
        for failure in failures:
            print(f"check-deploy: {what}: {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"check-deploy: {what}: {checked} checks passed")


# ---- Kubernetes ---------------------------------------------------------------------------


def load_objects(path: str) -> tuple[dict, list[str]]:
    objects: dict = {}
    external: list[str] = []
    for line in Path(path).read_text().splitlines():
        item = json.loads(line)
        if item["kind"] == "ExternalSecrets":
            external = item["names"]
            continue
        objects[(item["kind"], item["name"])] = item["object"]
    return objects, external


def container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


def env_of(objects: dict, workload: dict) -> dict:
    """The container's environment: its envFrom ConfigMaps, then its own env (which wins)."""
    c = container(workload)
    env: dict = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(objects[("ConfigMap", ref["name"])].get("data", {}))
    for item in c.get("env", []):
        env[item["name"]] = item.get("value", "<from field>")
    return env


def k8s(overlay: str, path: str) -> None:
    """Facts every overlay keeps, and what tells dev from prod."""
    objects, external = load_objects(path)
    n = 0

    def fact(condition: bool, message: str) -> None:
        nonlocal n
        n += 1
        check(condition, message)

    namespace = {"dev": "setpoint-dev", "prod": "setpoint"}[overlay]
    fact(("Namespace", namespace) in objects, f"no Namespace {namespace}")
    writer = objects.get(("Deployment", "setpoint-writer"))
    edge = objects.get(("DaemonSet", "setpoint-edge"))
    fact(writer is not None, "no writer Deployment")
    fact(edge is not None, "no edge DaemonSet (the node agent)")
    if writer is None or edge is None:
        return
    replicas = {"dev": 1, "prod": 2}[overlay]
    fact(writer["spec"]["replicas"] == replicas, f"writer replicas {writer['spec']['replicas']}, not {replicas}")
    for name, workload in (("writer", writer), ("edge", edge)):
        c = container(workload)
        fact(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name} liveness is not /healthz")
        fact(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name} readiness is not /readyz")
        fact(c["args"] == [name], f"{name} runs {c['args']}")
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        fact(annotations.get("prometheus.io/scrape") == "true", f"{name} pods are not marked for scraping")
        env = env_of(objects, workload)
        fact(env.get("SETPOINT_METRICS_PUBLIC") == "true", f"{name} /metrics needs a key the scraper lacks")
        for var in ("SETPOINT_CA", "SETPOINT_CERT", "SETPOINT_KEY"):
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            fact(any(env.get(var, "").startswith(m + "/") for m in mounts), f"{name} {var}={env.get(var)} is on no mounted volume")
        fact(workload["spec"]["template"]["spec"].get("automountServiceAccountToken") is False, f"{name} mounts an API token")
    writer_env = env_of(objects, writer)
    edge_env = env_of(objects, edge)
    fact(writer_env.get("SETPOINT_STORE", "").startswith("etcd://"), "the writers share no etcd")
    fact(writer_env.get("SETPOINT_ADVERTISE") == "http://$(POD_IP):8000", "writers do not advertise their pod address for 307s")
    fact(edge_env.get("SETPOINT_WRITER") == "setpoint-writer:8000", "edges do not follow the writer Service")
    writer_service = objects.get(("Service", "setpoint-writer"), {})
    protocols = {(p["port"], p.get("protocol", "TCP")) for p in writer_service.get("spec", {}).get("ports", [])}
    fact(protocols == {(8000, "TCP"), (8000, "UDP")}, f"writer Service ports {protocols}: REST over TCP and QUIC over UDP expected")
    edge_service = objects.get(("Service", "setpoint-edge"), {})
    fact(edge_service.get("spec", {}).get("internalTrafficPolicy") == "Local", "edge Service traffic may leave the node")
    pdb = objects.get(("PodDisruptionBudget", "setpoint-writer"))
    fact(pdb is not None and pdb["spec"].get("minAvailable") == 1, "no PodDisruptionBudget keeping a writer")
    policy = objects.get(("NetworkPolicy", "setpoint-writer"), {})
    udp_from = [
        rule.get("from", [])
        for rule in policy.get("spec", {}).get("ingress", [])
        if any(p.get("protocol") == "UDP" and p.get("port") == 8000 for p in rule.get("ports", []))
    ]
    fact(
        udp_from == [[{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "setpoint", "app.kubernetes.io/component": "edge"}}}]],
        f"the writers' QUIC port is open to {udp_from}, not only to edges",
    )
    fact(("NetworkPolicy", "setpoint-edge") in objects, "no NetworkPolicy for the edges' port")
    fact(sorted(external) == ["setpoint-admin", "setpoint-edge-tls", "setpoint-writer-tls"], f"Secrets expected to exist: {external}")
    etcd = ("StatefulSet", "etcd") in objects
    fact(etcd == (overlay == "dev"), f"an etcd StatefulSet in {overlay}: {etcd} (only dev runs its own)")
    finish(f"kubernetes {overlay}", n)


# ---- systemd env files --------------------------------------------------------------------


def env_files(binary: str, systemd_dir: str) -> None:
    """Every SETPOINT_* variable an env file or unit names (set or commented out) is one the
    binary reads for that service, as its --help lists them."""
    n = 0
    for role in ("writer", "edge"):
        help_text = subprocess.run([binary, role, "--help"], capture_output=True, text=True, check=True).stdout
        known = set(re.findall(r"\[env: (SETPOINT_[A-Z0-9_]+)=", help_text))
        check(len(known) > 10, f"`setpoint {role} --help` lists only {sorted(known)}")
        for file in (Path(systemd_dir) / f"{role}.env", Path(systemd_dir) / f"setpoint-{role}.service"):
            for var in sorted(set(re.findall(r"\b(SETPOINT_[A-Z0-9_]+)=", file.read_text()))):
                n += 1
                check(var in known, f"{file.name} names {var}, which `setpoint {role}` does not read")
    # Regression (writer_unit_keeps_proc_sys_for_the_default_advertise): ProcSubset=pid hid
    # /proc/sys/kernel/hostname, so a writer left on its default SETPOINT_ADVERTISE advertised
    # http://localhost:8000 and standbys redirected writes there.
    writer_unit = (Path(systemd_dir) / "setpoint-writer.service").read_text()
    n += 1
    check(
        not re.search(r"^ProcSubset=pid", writer_unit, re.M),
        "setpoint-writer.service hides /proc/sys (ProcSubset=pid): the default advertise URL would be localhost",
    )
    finish("env files", n)


# ---- Debian package -----------------------------------------------------------------------


def deb_contents(listing: str) -> None:
    """`dpkg-deb --contents` holds the binary, the man page, the units and the env files."""
    paths = {}
    for line in Path(listing).read_text().splitlines():
        fields = line.split()
        paths[fields[-1].lstrip(".")] = fields[0]
    expected = {
        "/usr/bin/setpoint": "-rwxr-xr-x",
        "/lib/systemd/system/setpoint-writer.service": "-rw-r--r--",
        "/lib/systemd/system/setpoint-edge.service": "-rw-r--r--",
        "/etc/setpoint/writer.env": "-rw-r--r--",
        "/etc/setpoint/edge.env": "-rw-r--r--",
        "/usr/share/lintian/overrides/setpoint": "-rw-r--r--",
        "/usr/share/man/man1/setpoint.1.gz": "-rw-r--r--",
        "/usr/share/doc/setpoint/copyright": "-rw-r--r--",
    }
    for path, mode in expected.items():
        check(path in paths, f"{path} is not in the package")
        check(paths.get(path, mode) == mode, f"{path} has mode {paths.get(path)}, not {mode}")
    finish("package contents", len(expected) * 2)


def deb_control(control_dir: str) -> None:
    """Conffiles are the env files; the maintainer scripts create the user and enable nothing."""
    root = Path(control_dir)
    conffiles = set((root / "conffiles").read_text().split())
    check(conffiles == {"/etc/setpoint/writer.env", "/etc/setpoint/edge.env"}, f"conffiles: {sorted(conffiles)}")
    postinst = (root / "postinst").read_text()
    check("adduser --system" in postinst, "postinst creates no system user")
    scripts = "".join((root / s).read_text() for s in ("postinst", "prerm", "postrm") if (root / s).exists())
    for verb in ("enable", "start ", "restart"):
        check(f"systemctl {verb}" not in scripts and f"deb-systemd-invoke {verb}" not in scripts, f"a maintainer script runs `{verb}`")
    check("deb-systemd-helper enable" not in scripts, "a maintainer script enables a unit")
    finish("package control", 6)


# ---- Terraform ----------------------------------------------------------------------------


def hcl_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".tf", ".tftest.hcl") or p.name.endswith(".tftest.hcl") if ".terraform" not in p.parts)


def terraform(root_dir: str) -> None:
    """Every file parses; every module call passes only variables the module declares, and every
    variable it requires."""
    import hcl2  # python-hcl2, installed into .tools/python by scripts/ensure-tools

    root = Path(root_dir)
    parsed: dict[Path, dict] = {}
    n = 0
    for file in hcl_files(root):
        n += 1
        try:
            with file.open() as handle:
                parsed[file] = hcl2.load(handle)
        except Exception as error:  # noqa: BLE001 - any parse failure is the finding
            failures.append(f"{file.relative_to(root)} does not parse: {error}")

    def variables(module_dir: Path) -> dict[str, bool]:
        """name -> required (no default)."""
        out: dict[str, bool] = {}
        for file, body in parsed.items():
            if file.parent.resolve() != module_dir or file.suffix != ".tf":
                continue
            for block in body.get("variable", []):
                for name, spec in block.items():
                    out[name.strip('"')] = "default" not in spec
        return out

    calls = 0
    for file, body in parsed.items():
        if file.suffix != ".tf":
            continue
        for block in body.get("module", []):
            for name, spec in block.items():
                calls += 1
                source = str(spec.get("source", "")).strip('"')
                where = f"{file.relative_to(root)}: module {name}"
                if not source.startswith("."):
                    failures.append(f"{where}: source {source!r} is not a module of this tree")
                    continue
                module_dir = (file.parent / source).resolve()
                declared = variables(module_dir)
                check(bool(declared), f"{where}: {source} declares no variables (or is missing)")
                meta = {"source", "version", "providers", "count", "for_each", "depends_on"}
                passed = {k for k in spec if k not in meta and not k.startswith("__")}
                for extra in sorted(passed - set(declared)):
                    failures.append(f"{where} passes {extra}, which {source} does not declare")
                for missing in sorted(k for k, required in declared.items() if required and k not in passed):
                    failures.append(f"{where} does not pass {missing}, which {source} requires")
    check(calls >= 3, f"only {calls} module calls found")
    finish("terraform", n + calls)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"k8s": k8s, "env-files": env_files, "deb-contents": deb_contents, "deb-control": deb_control, "terraform": terraform}[command](*args)
