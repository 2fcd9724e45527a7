"""Real Kubernetes control plane for e2e tests: etcd, kube-apiserver, KCM, scheduler and kwok on 127.0.0.1.

The binaries come from ``tests/e2e/build-control-plane.sh`` (see :func:`build_binaries`), which builds
them from Go modules into a per-machine cache. :class:`ControlPlane` starts them as separate processes on
free loopback ports with a throw-away PKI and a run directory from :func:`tempfile.mkdtemp`, writes an admin
kubeconfig, registers one kwok-managed fake Node and waits until it is Ready and kwok holds its Lease (which
keeps it Ready), so Deployments get Ready pods and stay Available.
``stop()`` tears everything down by PID; ``atexit`` and SIGTERM/SIGHUP handlers do the same for interrupted
runs.

Only the standard library is used, so the module also works as a command for humans::

    python -m tests.e2e.cluster up        # from the repository root; prints the kubeconfig path, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-control-plane.sh"

FAKE_NODE_NAME = "kwok-node-0"
NODE_LEASE_SECONDS = 40  # kwok renews the fake Node's Lease in kube-node-lease (kwokctl's default)
START_TIMEOUT = 180.0  # seconds for kube-apiserver /readyz on a loaded 2-core machine
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 40

# kwok stage files (paths relative to <bin dir>/stages), the "fast" set kwokctl uses by default.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


@dataclass(frozen=True)
class Binaries:
    """Where the build script put the control-plane binaries and helm/kubectl."""

    bin_dir: Path
    tools_dir: Path

    @property
    def kubectl(self) -> Path:
        return self.tools_dir / "kubectl"

    @property
    def helm(self) -> Path:
        return self.tools_dir / "helm"


def build_binaries(*, tools_only: bool = False, log: TextIO | None = None) -> Binaries:
    """Run the build script (a no-op when cached) and return the cache directories it printed.

    The script's ``[build]`` progress lines (stderr) go to ``log`` (default: this process's stderr).
    With ``tools_only`` only helm and kubectl are fetched and ``bin_dir`` is empty.
    """
    cmd = ["bash", str(BUILD_SCRIPT)] + (["--tools-only"] if tools_only else [])
    err = log if log is not None else sys.stderr
    stderr_lines: list[str] = []

    def pump(stream: TextIO) -> None:
        for line in stream:
            stderr_lines.append(line)
            err.write(line)
            err.flush()

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        pumper = threading.Thread(target=pump, args=(proc.stderr,), daemon=True)
        pumper.start()
        out = proc.stdout.read()
        rc = proc.wait()
        pumper.join()
    if rc != 0:
        tail = "".join(stderr_lines[-LOG_TAIL_LINES:])
        raise ControlPlaneError(f"{' '.join(cmd)} failed with exit code {rc}:\n{tail}")
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    tools = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("tools-dir:")), None)
    if tools is None or not lines:
        raise ControlPlaneError(f"unexpected output of {BUILD_SCRIPT}: {out!r}")
    bin_dir = Path(lines[-1]) if not tools_only else Path()
    return Binaries(bin_dir=bin_dir, tools_dir=Path(tools))


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def has_default_route() -> bool:
    """True if /proc/net/route lists an IPv4 default route (kube-apiserver needs one to pick its address)."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(len(f) > 2 and f[1] == "00000000" for f in (line.split() for line in lines))


def non_loopback_ipv4() -> str | None:
    """A non-loopback IPv4 address of this host, or None."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            if not addr.startswith("127."):
                return addr
    return None


def advertise_flags() -> list[str]:
    """kube-apiserver flags for its advertise address (nothing listens on it; clients use 127.0.0.1)."""
    forced = os.environ.get("MAESTRO_E2E_ADVERTISE_ADDRESS")
    if forced:
        return [f"--advertise-address={forced}"]
    if has_default_route():
        return []
    addr = non_loopback_ipv4()
    if addr:
        return [f"--advertise-address={addr}"]
    # No usable address at all: loopback is only accepted with the endpoint reconciler off.
    return ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]


def _set_pdeathsig() -> None:
    """In the child: get SIGKILL if the parent dies (covers a SIGKILLed test run). Linux only.

    SIGKILL, not SIGTERM: an orphaned kube-apiserver whose etcd is gone can hang in graceful shutdown.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, all on 127.0.0.1.

    ``bin_dir`` is the cache directory printed by the build script (it holds the binaries and ``stages/``).
    """

    bin_dir: Path
    start_timeout: float = START_TIMEOUT
    keep_run_dir: bool = False
    run_dir: Path | None = None
    api_port: int = 0
    procs: list[_Proc] = field(default_factory=list)
    _stopped: bool = False

    # -- public API -------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        if self.run_dir is None:
            raise ControlPlaneError("control plane not started")
        return self.run_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self) -> Path:
        """Start every component, wait until a fake Node is Ready and return the kubeconfig path."""
        t0 = time.monotonic()
        self.run_dir = Path(tempfile.mkdtemp(prefix="maestro-e2e-"))
        (self.run_dir / "logs").mkdir()
        _register_for_cleanup(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - t0
        self._say(f"control plane ready in {elapsed:.1f}s: {self.server}, kubeconfig {self.kubeconfig}")
        return self.kubeconfig

    def stop(self) -> None:
        """SIGTERM every process (reverse start order), SIGKILL after 10 s, remove the run dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for proc in reversed(self.procs):
            _terminate(proc.popen)
        self.procs.clear()
        if self.run_dir is not None and not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        _unregister(self)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start sequence ---------------------------------------------------------------------------------

    def _start(self) -> None:
        assert self.run_dir is not None
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError(f"{self.bin_dir / name} is missing; run {BUILD_SCRIPT}")
        pki = self._make_pki()
        etcd_port, peer_port, self.api_port, kcm_port, sched_port = free_ports(5)

        self._spawn(
            "etcd",
            "--name=e2e",
            f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=e2e=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        )
        self._wait_http("etcd", f"http://127.0.0.1:{etcd_port}/health", timeout=60, ctx=None)

        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            *advertise_flags(),
        )
        self._wait_http("kube-apiserver", f"{self.server}/readyz", timeout=self.start_timeout, ctx=self._ssl())
        self._write_kubeconfig(pki)

        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        )
        stages = self.bin_dir / "stages"
        self._spawn(
            "kwok",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            # Without it kwok keeps no Lease in kube-node-lease; the node-lifecycle controller then marks the
            # Node NotReady about every 55 s and kwok never sets the pods Ready again. kwokctl passes 40.
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            *(f"--config={stages / s}" for s in KWOK_STAGES),
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self._wait_http("kube-controller-manager", f"https://127.0.0.1:{kcm_port}/healthz", timeout=60, ctx=insecure)
        self._wait_http("kube-scheduler", f"https://127.0.0.1:{sched_port}/healthz", timeout=60, ctx=insecure)
        self._create_fake_node()
        self._wait_node_ready(FAKE_NODE_NAME, timeout=60)
        self._wait_node_lease(FAKE_NODE_NAME, timeout=60)

    def _make_pki(self) -> Path:
        assert self.run_dir is not None
        pki = self.run_dir / "pki"
        pki.mkdir()
        (pki / "apiserver.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n"
        )
        (pki / "admin.ext").write_text("extendedKeyUsage=clientAuth\n")
        days = "3650"
        commands = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days, "-subj", "/CN=maestro-e2e-ca",
             "-keyout", "ca.key", "-out", "ca.crt"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
             "-keyout", "apiserver.key", "-out", "apiserver.csr"],
            ["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", days, "-extfile", "apiserver.ext", "-out", "apiserver.crt"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=maestro-e2e-admin",
             "-keyout", "admin.key", "-out", "admin.csr"],
            ["x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", days, "-extfile", "admin.ext", "-out", "admin.crt"],
            ["genrsa", "-out", "sa.key", "2048"],
            ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ]  # fmt: skip
        for args in commands:
            res = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True)
            if res.returncode != 0:
                raise ControlPlaneError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")
        return pki

    def _write_kubeconfig(self, pki: Path) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "maestro-e2e",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "maestro-e2e-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "maestro-e2e", "context": {"cluster": "maestro-e2e", "user": "maestro-e2e-admin"}}],
            "current-context": "maestro-e2e",
        }
        # JSON is valid YAML; every kubeconfig loader accepts it.
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        self.kubeconfig.chmod(0o600)

    # -- helpers --------------------------------------------------------------------------------------

    def _say(self, msg: str) -> None:
        print(f"[cluster] {msg}", file=sys.stderr, flush=True)

    def _spawn(self, name: str, *args: str) -> None:
        assert self.run_dir is not None
        log_path = self.run_dir / "logs" / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
                # Own process group: a terminal's Ctrl-C reaches only us, and we stop in order.
                start_new_session=True,
                # PR_SET_PDEATHSIG fires when the forking *thread* exits: only use it from the main thread.
                preexec_fn=_set_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            )
        self.procs.append(_Proc(name, popen, log_path))
        self._say(f"started {name} (pid {popen.pid}, log {log_path})")

    def _check_alive(self) -> None:
        for proc in self.procs:
            rc = proc.popen.poll()
            if rc is not None:
                raise ControlPlaneError(f"{proc.name} exited with code {rc}\n{self._tail(proc)}")

    def _tail(self, proc: _Proc) -> str:
        try:
            lines = proc.log.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {proc.log})"
        return f"--- last lines of {proc.log} ---\n" + "\n".join(lines[-LOG_TAIL_LINES:])

    def _proc(self, name: str) -> _Proc:
        return next(p for p in self.procs if p.name == name)

    def _ssl(self) -> ssl.SSLContext:
        assert self.run_dir is not None
        pki = self.run_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _poll(self, name: str, what: str, timeout: float, probe: Callable[[], str | None]) -> None:
        """Call ``probe`` until it returns None (success); it returns the latest failure reason otherwise."""
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        reason: str | None = "not probed"
        while time.monotonic() < deadline:
            self._check_alive()
            reason = probe()
            if reason is None:
                self._say(f"{name}: {what} after {time.monotonic() - t0:.1f}s")
                return
            time.sleep(0.3)
        raise ControlPlaneError(
            f"{name}: not {what} within {timeout:.0f}s (last: {reason})\n{self._tail(self._proc(name))}"
        )

    def _wait_http(self, name: str, url: str, *, timeout: float, ctx: ssl.SSLContext | None) -> None:
        def probe() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                    return None if resp.status == 200 else f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
            except (OSError, ValueError) as exc:
                return repr(exc)

        self._poll(name, f"healthy at {url}", timeout, probe)

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10, context=self._ssl()) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def _create_fake_node(self) -> None:
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": FAKE_NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/role": "agent",
                    "node-role.kubernetes.io/agent": "",
                    "type": "kwok",
                },
            },
            "spec": {},  # no kwok NoSchedule taint: ordinary Deployments schedule here
            "status": {
                "allocatable": resources,
                "capacity": resources,
                "nodeInfo": {
                    "architecture": "amd64",
                    "kubeProxyVersion": "fake",
                    "kubeletVersion": "fake",
                    "operatingSystem": "linux",
                },
                "phase": "Running",
            },
        }
        self._api("POST", "/api/v1/nodes", node)

    def _wait_node_ready(self, name: str, *, timeout: float) -> None:
        def probe() -> str | None:
            try:
                node = self._api("GET", f"/api/v1/nodes/{name}")
            except (OSError, ValueError) as exc:
                return repr(exc)
            conds = {c.get("type"): c.get("status") for c in node.get("status", {}).get("conditions", [])}
            return None if conds.get("Ready") == "True" else f"conditions {conds}"

        self._poll("kwok", f"node {name} Ready", timeout, probe)

    def _wait_node_lease(self, name: str, *, timeout: float) -> None:
        """Until kwok holds the Node's Lease (without one the Node would go NotReady within a minute)."""

        def probe() -> str | None:
            try:
                self._api("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                return repr(exc)
            return None

        self._poll("kwok", f"lease kube-node-lease/{name} present", timeout, probe)


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process (its own process group), wait up to STOP_GRACE, then SIGKILL."""
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


# -- teardown on interpreter exit and on SIGTERM/SIGHUP ---------------------------------------------------

_live: list[ControlPlane] = []
_handlers_installed = False


def _stop_all() -> None:
    for plane in list(_live):
        plane.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    # Unwind like Ctrl-C: pytest then stops the session (running finalizers) instead of reporting an error.
    raise KeyboardInterrupt(f"signal {signum}")


def _register_for_cleanup(plane: ControlPlane) -> None:
    global _handlers_installed
    _live.append(plane)
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
    # SIGINT keeps Python's default (KeyboardInterrupt), which unwinds through pytest finalizers and atexit.


def _unregister(plane: ControlPlane) -> None:
    with contextlib.suppress(ValueError):
        _live.remove(plane)


@contextlib.contextmanager
def running_control_plane(bin_dir: Path, **kwargs: Any) -> Iterator[ControlPlane]:
    """Context manager: a started :class:`ControlPlane`, stopped on exit."""
    plane = ControlPlane(bin_dir, **kwargs)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build (if needed), start a cluster, print the kubeconfig path, wait for Ctrl-C")
    up.add_argument("--keep-run-dir", action="store_true", help="keep logs and etcd data after stopping")
    sub.add_parser("build", help="only run the build script and print the cache directories")
    args = parser.parse_args(argv)
    # Ctrl-C must stop the cluster even if SIGINT was inherited as ignored (e.g. started with `&` by a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    binaries = build_binaries()
    if args.command == "build":
        print(f"bin-dir: {binaries.bin_dir}\nkubectl: {binaries.kubectl}\nhelm: {binaries.helm}")
        return 0
    with running_control_plane(binaries.bin_dir, keep_run_dir=args.keep_run_dir) as plane:
        print(f"kubeconfig: {plane.kubeconfig}")
        print(f"try: {binaries.kubectl} --kubeconfig {plane.kubeconfig} get nodes")
        print("Ctrl-C stops the cluster.", flush=True)
        try:
            while True:
                plane._check_alive()
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
