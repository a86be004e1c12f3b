"""runledger's Python hook: which packages a Slurm job's Python processes imported.

Loaded by ``runledger-python.pth`` (installed in the system's site-packages) only when the
runledger SPANK plugin named a per-job directory in ``RUNLEDGER_PYTHON_DIR``, i.e. only inside a
recorded Slurm job; elsewhere the ``.pth`` line costs one dictionary lookup. Python 2 and programs
that read ``PYTHONPATH`` see nothing of it: the plugin sets no standard variable.

Per interpreter process of rank 0 (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``, ``PMIX_RANK``, else
``SLURM_PROCID``; other ranks stay silent) it keeps one file ``<dir>/<pid>.rlpy``:

* at start, a JSON header line with what is known (interpreter, version, prefixes, main script,
  ``-m`` module or ``-c``, rank); the process is "unfinished" until it says otherwise;
* while it runs, one line per top-level non-standard-library package as its import begins,
  ``?name`` (a ``pwrite`` into the already open file), its first byte turned into ``+`` once the
  module is in ``sys.modules`` or ``-`` when the import failed, at the next import; so a process
  killed by SIGKILL, the OOM killer or the time limit still leaves what it had imported (and
  what it was importing);
* at exit (``atexit``, after the program's own handlers), the file is replaced by one JSON line
  with the packages actually imported, their versions (``__version__`` first, the package
  metadata only for those without one) and how the process ended (``normal`` or
  ``exception:<Type>``).

It never prints, never raises and never changes what the program does: every step is guarded,
the only visible trace is a no-op finder first on ``sys.meta_path``. Bounded: at most
``MAX_PACKAGES`` names of at most ``MAX_NAME`` characters, versions of ``MAX_VERSION``, the file at
most ``MAX_BYTES``, at most ``MAX_FILES`` files per job directory. The epilog reads the directory
as the job's user and validates it strictly; whatever is written here is only the user's word.
"""

import os
import sys

FORMAT = 1
MAX_PACKAGES = 256
MAX_NAME = 64
MAX_VERSION = 64
MAX_TEXT = 512
MAX_BYTES = 32768
MAX_FILES = 128
_OFF = ("0", "no", "false", "off")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")

# JSON string escapes without importing json (its import costs more than the whole hook).
_ESC = {i: "\\u%04x" % i for i in range(32)}
_ESC.update({ord('"'): '\\"', ord("\\"): "\\\\", 0x7F: "\\u007f"})


def _q(s):
    if not isinstance(s, str):
        s = str(s)
    if len(s) > MAX_TEXT:
        s = s[:MAX_TEXT]
    return '"' + s.translate(_ESC) + '"'


class _State:
    fd = -1
    pid = 0
    path = ""
    header = ""
    offset = 0
    names = []
    seen = set()
    # (name, offset of its line) of imports begun and not yet settled
    pending = []


def _main_of(argv):
    """The main script, ``-m module`` or ``-c`` from the interpreter's own command line."""
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-c" or (a.startswith("-") and not a.startswith("--") and a.endswith("c") and "c" in a[1:]):
            return "-c"
        if a == "-m" and i + 1 < len(argv):
            return "-m " + argv[i + 1]
        if a.startswith("-m") and len(a) > 2 and not a.startswith("--"):
            return "-m " + a[2:]
        if a in ("-W", "-X", "--check-hash-based-pycs"):
            i += 2
            continue
        if a == "-" or not a.startswith("-"):
            return a
        i += 1
    return ""


class _Finder:
    """First on sys.meta_path: notes each new top-level package, finds nothing itself."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        try:
            if _State.pending:
                _settle()
            if path is None and "." not in name and name not in _State.seen:
                _note(name)
        except BaseException:
            pass
        return None

    @staticmethod
    def invalidate_caches():
        pass


def _note(name):
    _State.seen.add(name)
    if name in _STDLIB or name[:1] == "_" or _State.fd < 0 or os.getpid() != _State.pid:
        return
    if len(_State.names) >= MAX_PACKAGES or len(name) > MAX_NAME:
        return
    line = ("?" + name + "\n").encode("utf-8", "replace")
    if _State.offset + len(line) > MAX_BYTES:
        return
    _State.names.append(name)
    _State.pending.append((name, _State.offset))
    os.pwrite(_State.fd, line, _State.offset)
    _State.offset += len(line)


def _settle():
    pending, _State.pending = _State.pending, []
    if _State.fd < 0 or os.getpid() != _State.pid:
        return
    mods = sys.modules
    for name, offset in pending:
        os.pwrite(_State.fd, b"+" if name in mods else b"-", offset)


def _version(mod, name, meta):
    v = getattr(mod, "__version__", None)
    if isinstance(v, str):
        return v
    if isinstance(v, tuple):
        return ".".join(str(p) for p in v)
    if meta is not None:
        try:
            return meta.version(name)
        except BaseException:
            pass
    return ""


def _ended():
    t = getattr(sys, "last_type", None)
    if t is None:
        return "normal"
    return "exception:" + getattr(t, "__name__", "?")[:MAX_NAME]


def _at_exit():
    try:
        if _State.fd < 0 or os.getpid() != _State.pid:
            return
        mods = sys.modules
        found = [(n, mods[n]) for n in _State.names if mods.get(n) is not None]
        meta = None
        if any(not isinstance(getattr(m, "__version__", None), (str, tuple)) for _, m in found):
            try:
                import importlib.metadata as meta
            except BaseException:
                meta = None
        pkgs = ",".join("[%s,%s]" % (_q(n), _q(_version(m, n, meta)[:MAX_VERSION])) for n, m in found)
        body = '%s,"ended":%s,"packages":[%s]}\n' % (_State.header, _q(_ended()), pkgs)
        data = body.encode("utf-8", "replace")
        if len(data) > MAX_BYTES:
            return
        # A new file renamed over the old one: a kill during this write leaves the early record.
        tmp = _State.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, _State.path)
    except BaseException:
        pass
    finally:
        _close()


def _close():
    fd, _State.fd = _State.fd, -1
    if fd >= 0:
        try:
            os.close(fd)
        except BaseException:
            pass


def _start():
    env = os.environ
    d = env.get("RUNLEDGER_PYTHON_DIR")
    if not d or not d.startswith("/") or env.get("RUNLEDGER_PYTHON", "1").strip().lower() in _OFF:
        return
    rank = None
    for var in _RANK_VARS:
        rank = env.get(var)
        if rank is not None:
            break
    if rank is not None and rank.strip() != "0":
        return
    try:
        if len(os.listdir(d)) >= MAX_FILES:
            return
    except OSError:
        return
    pid = os.getpid()
    path = "%s/%d.rlpy" % (d, pid)
    argv = getattr(sys, "orig_argv", None) or [sys.executable] + list(sys.argv)
    header = '{"v":%d,"pid":%d,"rank":%s,"interpreter":%s,"version":%s,"prefix":%s,"base_prefix":%s,"main":%s,"start":%d' % (
        FORMAT,
        pid,
        _q(rank or "0"),
        _q(sys.executable),
        _q("%d.%d.%d" % sys.version_info[:3]),
        _q(sys.prefix),
        _q(getattr(sys, "base_prefix", sys.prefix)),
        _q(_main_of(argv)),
        int(__import__("time").time()),
    )
    first = (header + "}\n").encode("utf-8", "replace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, first)
    except BaseException:
        os.close(fd)
        raise
    _State.fd, _State.pid, _State.path, _State.header, _State.offset = fd, pid, path, header, len(first)
    # A forked child is another process with the parent's imports: it records nothing.
    os.register_at_fork(after_in_child=_close)
    # Packages imported before the hook ran (by earlier .pth files) count too.
    for name in list(sys.modules):
        if "." not in name and name not in _State.seen:
            _note(name)
    import atexit

    atexit.register(_at_exit)
    sys.meta_path.insert(0, _Finder)


_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names) | {
    "sitecustomize",
    "usercustomize",
    "_runledger_pyhook",
}

try:
    _start()
except BaseException:
    _close()
