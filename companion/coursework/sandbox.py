"""Run one student's kernel alone: its own account, namespaces and limits.

When the grader runs as root (as in a container or CI), every kernel starts
through this module's launcher (``python -m companion.coursework.sandbox
CONFIG -- KERNEL...``), which

* unshares a **PID namespace**: the kernel and everything it starts live under
  a small init (PID 1 of the namespace); when the kernel ends, or the grader
  kills the launcher, that init dies and the Linux kernel kills every process
  left in the namespace, double-forked daemons included. The grader's own
  processes are not visible from inside (a fresh ``/proc``), so a notebook
  cannot read the grader's command line or signal it;
* unshares a **network namespace** with no interface up: no network at all
  (the grader talks to the kernel over Unix sockets in its working folder);
* unshares a **mount namespace** in which every file system is remounted
  read-only, ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are fresh private tmpfs,
  and the submissions folder, the output folder and the grader's scratch
  folder are covered by empty read-only tmpfs. The only writable place that
  outlives nothing is the submission's own working folder, bind-mounted back;
* drops to a **dedicated unprivileged account** (``bbsandbox<N>``, one per
  concurrent job, created with ``useradd`` when a grading run needs it and
  removed with ``userdel`` when that run ends, see :class:`Account`), with no
  supplementary groups and ``no_new_privs`` (set-uid programs do not elevate);
* sets **resource limits**: CPU seconds, address space, processes (per
  account, so per job), file size, open files, no core dumps; and, where the
  cgroup-v1 memory and pids controllers are writable, a memory and process
  cap for the whole tree.

Without root the launcher can only set the resource limits and a new session:
the result rows then say ``isolation: none``. See the instructors' page.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import resource
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CGROUP_V1 = Path("/sys/fs/cgroup")
ACCOUNT_PREFIX = "bbsandbox"
TEMPORARY = "beyond-backprop grading account, removed after its grading run"
"""The comment (GECOS field, so no colon) of the accounts the grader creates, and so may remove."""


def made_by_grader(entry: pwd.struct_passwd) -> bool:
    """Whether an account was created by the grader: this one (its comment), or an earlier one (no comment,
    no home, no shell: exactly what it ran ``useradd`` with)."""
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        return False
    earlier = entry.pw_gecos == "" and entry.pw_dir == "/nonexistent" and entry.pw_shell.endswith("/nologin")
    return entry.pw_gecos == TEMPORARY or earlier


@dataclass
class Limits:
    """Resource limits of one submission's kernel (and of everything it starts)."""

    cpu_seconds: int = 1800           # CPU time of one kernel process (SIGXCPU, then killed)
    memory_bytes: int = 4 << 30       # address space per process; the cgroup caps the tree at this too
    processes: int = 256              # processes and threads of the job's account
    file_bytes: int = 512 << 20       # largest file it may write
    open_files: int = 1024
    tmpfs_bytes: int = 256 << 20      # size of its private /tmp and /dev/shm


@dataclass
class JailConfig:
    workdir: str
    connection_file: str
    uid: int
    gid: int
    hide: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)  # read-only paths the kernel needs (the interpreter...)
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    namespaces: bool = True
    grader_pid: int = 0  # the launcher ends its kernel when this process is no longer its parent
    cgroup: str = ""  # name of this job's cgroup under the v1 memory and pids controllers


def is_root() -> bool:
    return os.geteuid() == 0


def account(slot: int) -> tuple[int, int]:
    """The (uid, gid) of the unprivileged account for job slot ``slot``, created if missing."""
    name = f"{ACCOUNT_PREFIX}{slot}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        try:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--user-group", "--comment", TEMPORARY, name],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(name)
        except (OSError, subprocess.CalledProcessError, KeyError):
            return _unassigned_id(slot)  # no useradd (a minimal image): a uid no account uses
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise RuntimeError(f"account {name} is privileged (uid {entry.pw_uid}); remove it")
    return entry.pw_uid, entry.pw_gid


LOCKS = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


def remove_account(name: str) -> bool:
    """Delete the grading account ``name`` if the grader created it (:func:`made_by_grader`); kill its processes first.

    An account of that name made by someone else (an image that ships
    ``bbsandbox0`` with a comment of its own) is left alone. True if the
    account is gone afterwards.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return True
    if not made_by_grader(entry):
        return False
    kill_account(entry.pw_uid)
    try:
        subprocess.run(["userdel", name], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        return True


class Account:
    """One grading account, held exclusively (a lock file) while kernels run under it.

    Concurrent grader runs on one machine never share an account, so one run's
    clean-up (killing what is left under the account) cannot touch another's
    kernel. :meth:`release` removes the account if the grader created it (an
    account left by a grader that was killed is removed by the next run that
    holds it), so no ``bbsandbox`` account outlives the runs that use it.
    """

    def __init__(self, max_slots: int = 64):
        import fcntl

        for slot in range(max_slots):
            fd = os.open(LOCKS / f"{ACCOUNT_PREFIX}{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fd, self.slot, self.name = fd, slot, f"{ACCOUNT_PREFIX}{slot}"
            try:
                self.uid, self.gid = account(slot)
            except BaseException:
                os.close(fd)
                raise
            return
        raise RuntimeError(f"all {max_slots} grading accounts are in use")

    def release(self, remove: bool = True) -> None:
        """Give the account up: first (``remove``) delete it if the grader created it, while it is still held."""
        try:
            if remove:
                remove_account(self.name)
        finally:
            os.close(self.fd)


def _unassigned_id(slot: int) -> tuple[int, int]:
    import grp

    for uid in range(61000 + slot, 65000, 64):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            pass
        if not processes_of(uid):
            return uid, uid
    raise RuntimeError("no unused uid for the grading account")


def namespaces_available() -> bool:
    """Whether this machine lets the grader unshare PID, mount and network namespaces."""
    if not is_root():
        return False
    probe = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "true"], capture_output=True)
    return probe.returncode == 0


# -- cgroups (host side, best effort) ---------------------------------------------------
def cgroup_create(name: str, limits: Limits) -> str:
    """Create ``name`` under the v1 memory and pids controllers; return "" where that is not possible."""
    made = []
    try:
        for controller, settings in (("memory", {"memory.limit_in_bytes": limits.memory_bytes}),
                                     ("pids", {"pids.max": limits.processes})):
            path = CGROUP_V1 / controller / name
            path.mkdir(parents=True, exist_ok=True)
            made.append(path)
            for key, value in settings.items():
                (path / key).write_text(str(value))
        return name
    except OSError:
        for path in made:
            _rmdir(path)
        return ""


def cgroup_remove(name: str) -> None:
    """Kill whatever is left in the job's cgroup and remove it."""
    if not name:
        return
    for controller in ("memory", "pids"):
        path = CGROUP_V1 / controller / name
        for _ in range(50):
            try:
                pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if _rmdir(path):
                break
            import time

            time.sleep(0.02)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def processes_of(uid: int) -> list[int]:
    """The process ids (on this host) running as ``uid``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def kill_account(uid: int) -> int:
    """SIGKILL every process of the grading account ``uid`` (a last line of defence); return how many."""
    killed = 0
    for _ in range(20):
        pids = processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


# -- the launcher (runs as the kernel command) ----------------------------------------
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(source.encode() if source else None, target.encode(),
                      fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                      data.encode() if data else None), f"mount {target}")


def _mountpoints() -> list[tuple[str, set[str]]]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            target = parts[4].encode().decode("unicode_escape")
            points.append((target, set(parts[5].split(","))))
    return points


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _setup_mounts(cfg: JailConfig) -> None:
    libc = _libc()
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    work_fd = os.open(cfg.workdir, os.O_PATH | os.O_DIRECTORY)
    for target, options in sorted(_mountpoints(), key=lambda p: len(p[0])):
        if any(_under(target, p) for p in ("/proc", "/sys", "/dev")):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= (MS_NOSUID if "nosuid" in options else 0) | (MS_NODEV if "nodev" in options else 0)
        flags |= MS_NOEXEC if "noexec" in options else 0
        try:
            _mount(libc, None, target, None, flags)
        except OSError:
            pass  # a mount that cannot be remounted (already read-only, or locked)
    exposed = {path: (os.open(path, os.O_PATH | os.O_DIRECTORY), _blocking_ancestor(path))
               for path in cfg.expose if os.path.isdir(path)}
    size = cfg.limits.tmpfs_bytes
    private = ["/tmp", "/var/tmp", "/dev/shm"]
    covered: list[str] = []
    for path in sorted(set(private + cfg.hide), key=len):
        if not os.path.isdir(path) or any(_under(path, c) for c in covered):
            continue
        mode = "1777" if path in private else "0755"
        _mount(libc, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")
        covered.append(path)
    # A needed path below a folder the account cannot enter (a Python under /root): cover the
    # folder with an empty tmpfs and bind just that path back, read-only.
    for path, (fd, blocking) in exposed.items():
        if blocking and not any(_under(blocking, c) for c in covered):
            _mount(libc, "tmpfs", blocking, "tmpfs", MS_NOSUID | MS_NODEV, "size=65536,mode=0755")
            covered.append(blocking)
        if blocking or any(_under(path, c) for c in covered):
            os.makedirs(path, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(libc, None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    os.makedirs(cfg.workdir, exist_ok=True)
    _mount(libc, f"/proc/self/fd/{work_fd}", cfg.workdir, None, MS_BIND)
    _mount(libc, None, cfg.workdir, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    os.close(work_fd)
    for path in covered:
        if path not in private:
            try:
                _mount(libc, None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
            except OSError:
                pass


def _blocking_ancestor(path: str) -> str:
    """The highest folder on the way to ``path`` that others may not enter, or ""."""
    parts = Path(path).parts
    for i in range(2, len(parts) + 1):
        folder = os.path.join(*parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return ""


def _set_limits(limits: Limits) -> None:
    for which, value in ((resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_AS, limits.memory_bytes),
                         (resource.RLIMIT_NPROC, limits.processes), (resource.RLIMIT_FSIZE, limits.file_bytes),
                         (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


def _exec_kernel(cfg: JailConfig, argv: list[str]) -> None:
    """In the child: new session, limits, drop to the account, exec the kernel. Never returns."""
    try:
        os.setsid()
        if cfg.uid != os.getuid():
            os.chown(cfg.connection_file, cfg.uid, cfg.gid)
        _set_limits(cfg.limits)
        if os.getuid() == 0:
            os.setgroups([])
            os.setresgid(cfg.gid, cfg.gid, cfg.gid)
            os.setresuid(cfg.uid, cfg.uid, cfg.uid)
            if os.geteuid() == 0 or os.getuid() == 0:
                raise RuntimeError("could not drop root")
        _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        os.chdir(cfg.workdir)
        os.execve(argv[0], argv, cfg.env)
    except BaseException as err:  # noqa: BLE001 - report and exit; there is nobody to raise to
        print(f"sandbox: cannot start the kernel: {err}", file=sys.stderr)
        os._exit(111)


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def _wait_for(child: int) -> int:
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def _watch_parent(grader: int) -> list[int]:
    """If the grader dies (even by SIGKILL), kill the kernel's tree instead of leaving it running.

    Returns the list to put the child's pid in. Started before ``unshare``: a
    process whose children go to a new PID namespace cannot start threads.
    """
    import threading
    import time

    parent = grader or os.getppid()
    if os.getppid() != parent:  # the grader died while this launcher was starting
        os._exit(1)
    child: list[int] = []

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                for pid in child:
                    _send(pid, signal.SIGKILL)
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    return child


def launch(cfg: JailConfig, argv: list[str]) -> int:
    """The launcher's body: the process the grader manages as "the kernel"."""
    if cfg.cgroup:
        for controller in ("memory", "pids"):
            try:
                (CGROUP_V1 / controller / cfg.cgroup / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass
    if not cfg.namespaces:
        child = os.fork()
        if child == 0:
            _exec_kernel(cfg, argv)
        signal.signal(signal.SIGINT, lambda *_: _send(child, signal.SIGINT))
        signal.signal(signal.SIGTERM, lambda *_: os.killpg(child, signal.SIGKILL))
        _watch_parent(cfg.grader_pid).append(child)
        return _wait_for(child)
    watched = _watch_parent(cfg.grader_pid)
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    init = os.fork()
    if init == 0:  # PID 1 of the new namespace
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.setpgid(0, 0)
            _setup_mounts(cfg)
        except BaseException as err:  # noqa: BLE001
            print(f"sandbox: cannot set up the namespaces: {err}", file=sys.stderr)
            os._exit(112)
        kernel = os.fork()
        if kernel == 0:
            _exec_kernel(cfg, argv)
        signal.signal(signal.SIGINT, lambda *_: _send(kernel, signal.SIGINT))
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # leaving kills the whole namespace
        os._exit(_wait_for(kernel))
    signal.signal(signal.SIGINT, lambda *_: _send(init, signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: _send(init, signal.SIGKILL))
    watched.append(init)
    return _wait_for(init)


def launcher_command(config_path: str) -> list[str]:
    return [sys.executable, "-s", "-m", "companion.coursework.sandbox", config_path, "--"]


def write_config(path: Path, cfg: JailConfig) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(cfg), f)


def _read_config(path: str) -> JailConfig:
    raw = json.loads(Path(path).read_text())
    raw["limits"] = Limits(**raw["limits"])
    return JailConfig(**raw)


if __name__ == "__main__":
    config, sep, *kernel_argv = sys.argv[1:]
    if sep != "--" or not kernel_argv:
        sys.exit("usage: python -m companion.coursework.sandbox CONFIG -- KERNEL COMMAND...")
    sys.exit(launch(_read_config(config), kernel_argv))
