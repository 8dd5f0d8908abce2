"""A real one-node Slurm for the tests, from the Debian packages, run as root in a folder of its own.

    python -m tests.slurm start DIR     # prints `export SLURM_CONF=DIR/slurm.conf`
    python -m tests.slurm stop DIR

Everything lives in DIR, started fresh each time (a leftover state folder of another cluster name
is fatal to slurmctld): munged with its own key and socket, slurm.conf (this machine as the one
node, as `slurmd -C` sees it), the controller's state and both daemons' logs. Clients find it
through SLURM_CONF, so /etc/slurm is never touched. Teardown cancels the jobs, then stops the
daemons by PID and waits for each to exit.

`.ci/run` installs the packages; `install()` does the same when the tests run elsewhere as root.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.apt import apt_install

# slurm-wlm-torque: qsub/qstat/qdel wrappers over Slurm (the PBS path; it is not a PBS server)
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "slurm-wlm-torque"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "munged", "mungekey", "qsub"]
CLUSTER = "screentest"
PARTITION = "debug"
OTHER_PARTITION = "gpu"  # a second, non-default partition
GPUS = 1  # counted GPUs on the one node (gres.conf, no device file)
PROBE_S = 5  # every client command blocks ~10 s while the controller is down: probes never wait that long


def missing_commands() -> List[str]:
    return [c for c in COMMANDS if not (shutil.which(c) or Path("/usr/sbin", c).exists())]


def install() -> Optional[str]:
    """Install the packages if they are missing; the reason they cannot be, or None."""
    return apt_install(PACKAGES, lambda: ", ".join(missing_commands()) and f"Slurm ({', '.join(missing_commands())})")


class Slurm:
    """A running Slurm in `root`; `env` is what a client needs (SLURM_CONF)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env: Dict[str, str] = {"SLURM_CONF": str(self.conf)}
        self.procs: Dict[str, subprocess.Popen] = {}
        self.cpus = 0

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "Slurm":
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("ctld", "d", "log"):
            (self.root / sub).mkdir(parents=True)
        self.root.chmod(0o755)  # munged refuses a socket folder others may write to
        self._start_munge()
        self._write_conf()
        env = dict(os.environ, **self.env)
        for name in ("slurmctld", "slurmd"):
            log = open(self.root / "log" / f"{name}.stdout", "wb")
            self.procs[name] = subprocess.Popen([_sbin(name), "-D", "-f", str(self.conf)], env=env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        subprocess.run([_sbin("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
        self.munge_socket = self.root / "munge.socket"
        self.procs["munged"] = subprocess.Popen(
            [_sbin("munged"), "-F", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--log-file={self.root / 'log' / 'munged.log'}", f"--pid-file={self.root / 'munged.pid'}",
             f"--seed-file={self.root / 'munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "log" / "munged.stderr", "wb"),
            start_new_session=True)
        _wait_for(lambda: self.munge_socket.exists() or self.procs["munged"].poll() is not None, 10)
        if not self.munge_socket.exists():
            raise RuntimeError(f"munged did not start: {(self.root / 'log' / 'munged.stderr').read_text()}")

    def _write_conf(self) -> None:
        node = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        node_line = next(line for line in node.splitlines() if line.startswith("NodeName="))
        fields = dict(f.split("=", 1) for f in node_line.split())
        self.host, self.cpus = fields["NodeName"], int(fields["CPUs"])
        r, st = self.root, self.root / "log"
        ctld_port, d_port = _free_port(), _free_port()
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/ctld
SlurmdSpoolDir={r}/d
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={st}/slurmctld.log
SlurmdLogFile={st}/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
MinJobAge=600
KillWait=5
GresTypes=gpu
{node_line} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName={OTHER_PARTITION} Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=NO
""")
        # A GPU the scheduler counts and hands out (no device file: this machine has none), so
        # --gres=gpu:N requests are checked and recorded by Slurm itself.
        (self.root / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File=/dev/null Count={GPUS}\n")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}); see {self.root / 'log'}: {self.log_tail(name)}")
            state = self.run(["sinfo", "-h", "-o", "%T"], timeout=PROBE_S, check=False).stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Slurm not ready after {timeout:.0f} s (node state {state!r}); see {self.root / 'log'}")

    # -- use -------------------------------------------------------------------------------------
    def run(self, cmd: List[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        try:
            r = subprocess.run(cmd, env=dict(os.environ, **self.env), capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            r = subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout} s")
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def jobs(self) -> List[Dict[str, str]]:
        """Jobs the controller still knows (running, pending and recently finished): id, name, state."""
        out = self.run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T"], check=False).stdout
        return [dict(zip(("id", "name", "state"), line.split("|"))) for line in out.splitlines() if line]

    def wait_gone(self, timeout: float = 60) -> bool:
        """Until no job is pending or running."""
        return _wait_for(lambda: not self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip(), timeout)

    def log_tail(self, name: str, n: int = 5) -> str:
        path = self.root / "log" / f"{name}.log"
        if not path.exists():
            path = self.root / "log" / f"{name}.stdout"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return " | ".join(lines[-n:])

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job (proctrack/linuxproc leaves job processes running when slurmd stops),
        then stop the daemons by PID, slurmd first, and wait for each."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run(["scancel", "--full", "-u", str(os.geteuid())], timeout=PROBE_S, check=False)
            self.wait_gone(20)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)  # slurmd takes seconds to exit
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def __enter__(self) -> "Slurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(ready, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.3)
    return ready()


if __name__ == "__main__":  # a Slurm to try `screen submit` by hand
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python -m tests.slurm start|stop DIR")
    root = Path(sys.argv[2]).resolve()
    if sys.argv[1] == "start":
        reason = install()
        if reason:
            sys.exit(reason)
        s = Slurm(root).start()
        (root / "pids").write_text(" ".join(str(p.pid) for p in s.procs.values()))
        print(f"export SLURM_CONF={s.conf}")
    else:
        s = Slurm(root)
        s.run(["scancel", "--full", "-u", str(os.geteuid())], timeout=PROBE_S, check=False)
        s.wait_gone(20)
        for pid in reversed((root / "pids").read_text().split()):  # slurmd, slurmctld, munged
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                continue
            _wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30)
