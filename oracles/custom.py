"""Bring your own scorer: a Python function or an external program as an oracle.

:class:`PythonFunction` calls ``package.module:callable`` on each canonical sequence (or on lists
of them, ``batched: true``); :class:`ExternalProcess` runs a program that reads one sequence per
line on stdin and writes one number per line on stdout. Both are
:class:`~oracles.base.MoleculeOracle`\\ s, so they have what the built-in oracles have: inputs
canonicalised before scoring (``domain``: SMILES, DNA, protein or plain text), each distinct
sequence scored once, the in-memory cache and the SQLite ``disk_cache`` (keyed by the canonical
form and by the oracle's settings, the source or script files included, so a changed function or
command never reuses old scores), parallel scoring, a progress bar on a terminal, and
``python -m oracles score``. The guide is docs/oracles.md.

What one bad sequence costs: ``None``, NaN or a non-number (a function's return value, a line of
a program's output) makes that sequence invalid — penalty energy, ``valid = False``, cached as
such. An exception in the function, or an external batch that fails (non-zero exit, wrong
number of lines, timeout), penalises the sequences concerned *this time* without caching them.
Each kind of problem is counted (``problem_counts``) and warned about once with examples; after
``max_consecutive_failures`` failures in a row the oracle raises
:class:`~oracles.base.OracleFailedError` rather than let a run train on penalties.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from networks.files import file_sha256
from oracles.base import _NOT_PLAIN, DOMAINS, MAX_SMILES_LENGTH, MoleculeOracle, OracleFailedError, _plain
from oracles.transforms import Identity, Negate, Transform

log = logging.getLogger(__name__)

EXAMPLES_SHOWN = 3  # examples of each kind of problem in its warning
STDERR_TAIL = 2000  # characters of a failed program's stderr shown
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL to a program's process group


def _energy_transform(transform: Transform | None, direction: str | None) -> Transform | None:
    if direction is None:
        return transform
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if transform is not None:
        raise ValueError("give either direction or transform, not both (direction: maximize is transform: Negate)")
    return Negate() if direction == "maximize" else Identity()


def load_callable(spec: str) -> tuple[Callable, Path | None]:
    """``"package.module:callable"`` (importable: on ``sys.path``/PYTHONPATH) or
    ``"path/to/file.py:callable"`` → the callable and the file that defines it (``None`` if none)."""
    module_name, _, attribute = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not module_name or not attribute:
        raise ValueError(f"function must be 'package.module:callable' or 'path/to/file.py:callable', got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"function {spec!r}: file {module_name} not found")
        key = "rewardfit_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(key)
        if module is None:
            loader = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[key] = module
            try:
                loader.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"function {spec!r}: cannot import {module_name!r} ({error}); put the directory that holds it on "
                f"PYTHONPATH (e.g. PYTHONPATH=$PWD) or give its file: 'path/to/{module_name.split('.')[-1]}.py:"
                f"{attribute}'") from error
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise AttributeError(f"function {spec!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"function {spec!r}: {attribute} is a {type(target).__name__}, not a callable")
    try:
        source = inspect.getsourcefile(target) or getattr(module, "__file__", None)
    except TypeError:  # a builtin
        source = getattr(module, "__file__", None)
    return target, Path(source) if source and Path(source).is_file() else None


CONSEQUENCES = {
    "the function raised": "the sequence gets the penalty energy this time, uncached, and is asked again later",
    "a batched call failed": "its sequences were passed again one at a time",
}


class _Problems:
    """Per-sequence problems of a user-supplied scorer: counted by kind; the first time a kind
    occurs it is logged as a warning with the first examples of that scoring call."""

    def __init__(self, oracle: str):
        self.oracle = oracle
        self.counts: Counter = Counter()
        self.warned: set[str] = set()
        self.pending: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        if kind not in self.warned:
            self.pending.setdefault(kind, [])
            if len(self.pending[kind]) < EXAMPLES_SHOWN:
                self.pending[kind].append(example)

    def flush(self) -> None:
        for kind, examples in self.pending.items():
            self.warned.add(kind)
            log.warning("oracle %r: %s — %s; e.g. %s. Later cases are counted (oracle.problem_counts), not logged",
                        self.oracle, kind, CONSEQUENCES.get(kind, "the sequence is invalid (penalty energy)"),
                        "; ".join(examples))
        self.pending = {}


class _UserScorer(MoleculeOracle):
    """What both user-supplied oracles share: domain, failure counting, the cache key."""

    def _setup(self, domain: str, version: str | None, depends_on: list[str] | None,
               max_consecutive_failures: int | None) -> None:
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
        if max_consecutive_failures is not None and (isinstance(max_consecutive_failures, bool)
                                                     or int(max_consecutive_failures) < 1):
            raise ValueError(f"max_consecutive_failures must be a positive integer or null, got {max_consecutive_failures!r}")
        depends_on = [str(p) for p in ([depends_on] if isinstance(depends_on, str) else depends_on or [])]
        missing = [p for p in depends_on if not self._resolve(p).is_file()]
        if missing:
            raise FileNotFoundError(f"oracle {self.name!r}: depends_on names files that do not exist: {missing}")
        self.domain = domain
        self.version = version
        self.depends_on = depends_on or None
        self.max_consecutive_failures = None if max_consecutive_failures is None else int(max_consecutive_failures)
        self._problems = _Problems(self.name)
        self._failures_in_a_row = 0
        self._namespace = None

    @property
    def problem_counts(self) -> dict[str, int]:
        """How many sequences (or external batches) had each kind of problem in this process."""
        return dict(self._problems.counts)

    def _resolve(self, path: str) -> Path:
        return Path(path).expanduser()

    def _source_files(self) -> list[Path]:
        """Files whose contents the scores depend on: ``depends_on`` (and, in subclasses, the
        function's module or the program's script)."""
        return [self._resolve(p) for p in self.depends_on or []]

    def cache_namespace(self) -> str:
        """The class, its settings and the contents of :meth:`_source_files`, hashed (so that an
        ``env`` with a token in it is not written into the cache file). Read on first use."""
        if self._namespace is None:
            settings = {k: None if v is None else _plain(v) for k, v in sorted(vars(self).items())
                        if k not in self.cache_insensitive and not k.startswith("_")}
            settings = {k: v for k, v in settings.items() if v is not _NOT_PLAIN}
            settings["files"] = {str(p): file_sha256(p) for p in self._source_files()}
            digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
            self._namespace = f"{type(self).__module__}.{type(self).__qualname__}:{digest}"
        return self._namespace

    def _failed(self, describe: Callable[[], str]) -> None:
        """One failure more in a row; past the threshold, stop the run with ``describe()``."""
        self._failures_in_a_row += 1
        limit = self.max_consecutive_failures
        if limit is not None and self._failures_in_a_row >= limit:
            raise OracleFailedError(
                f"oracle {self.name!r} ({type(self).__name__}) failed {self._failures_in_a_row} times in a row, "
                f"so the run stops instead of training on penalty energies. {describe()}. Fix the scorer, or "
                "raise max_consecutive_failures (null: never stop)")

    def _number(self, value, sequence: str) -> float:
        """A returned value or output line → float; NaN (invalid) for None, NaN, ±inf, non-numbers."""
        if value is None or (isinstance(value, str) and not value.strip()):
            self._problems.counts["no value"] += 1
            return math.nan
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._problems.add("not a number", f"{value!r} for {sequence!r}")
            return math.nan
        if not math.isfinite(number):
            self._problems.counts["NaN or infinite"] += 1
            return math.nan
        return number


class PythonFunction(_UserScorer):
    """A Python callable as an oracle: ``value = function(canonical_sequence)``.

    Args:
        function: ``"package.module:callable"``, importable from the user's path (PYTHONPATH), or
            ``"path/to/file.py:callable"``. It gets a canonical sequence (a string) and returns a
            number; ``None`` or NaN means invalid. An exception makes that sequence invalid.
        batched: call ``function(list_of_sequences)`` with up to ``batch_size`` sequences, which
            returns as many values (a list, array or tensor). A batch that raises or returns the
            wrong number of values is called again one sequence at a time.
        batch_size: sequences per call when ``batched`` (and, either way, per write to ``disk_cache``).
        domain: what the inputs are: ``smiles`` (canonicalised with RDKit; the default), ``dna``
            (ACGT), ``protein`` (the 20 amino acids) — those two pass through unchanged — or
            ``text`` (any one-line string, as is). Invalid inputs never reach the function.
        direction: ``maximize`` (energy −value) or ``minimize`` (energy = value; the default), or
            give ``transform`` (``NegLog``, ``Harmonic``, …) instead.
        depends_on: files the values depend on (a model): their contents are part of the disk
            cache's key, as the function's own source file is.
        version: any string; change it to invalidate the disk cache when something else the
            function depends on changes.
        max_consecutive_failures: exceptions in a row after which the oracle raises
            :class:`~oracles.base.OracleFailedError` (``null``: never).
        transform, penalty, name, cache_size, n_workers, disk_cache, worker_timeout, max_length: as
            for every :class:`~oracles.base.MoleculeOracle`; ``name`` defaults to the callable's name.
            With ``n_workers > 1`` batches of 128 or more run in forked processes, and
            ``worker_timeout`` bounds them.
    """

    def __init__(self, function: str, batched: bool = False, batch_size: int = 256, domain: str = "smiles",
                 direction: str | None = None, depends_on: list[str] | None = None, version: str | None = None,
                 max_consecutive_failures: int | None = 100, transform: Transform | None = None,
                 penalty: float = 10.0, name: str | None = None, cache_size: int = 200_000, n_workers: int = 1,
                 disk_cache: str | None = None, worker_timeout: float | None = None,
                 max_length: int = MAX_SMILES_LENGTH):
        callable_, source = load_callable(function)
        super().__init__(_energy_transform(transform, direction), penalty,
                         name or getattr(callable_, "__name__", None) or "function", cache_size, n_workers,
                         disk_cache, worker_timeout, max_length)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.function, self.batched, self.batch_size, self.direction = function, bool(batched), int(batch_size), direction
        self._function, self._source = callable_, source
        self._setup(domain, version, depends_on, max_consecutive_failures)

    cache_insensitive = MoleculeOracle.cache_insensitive | {"batch_size", "direction", "max_consecutive_failures"}

    def __getstate__(self) -> dict:  # the callable is imported again where it is unpickled
        state = super().__getstate__()
        state["_function"] = None
        return state

    def _source_files(self) -> list[Path]:
        return ([self._source] if self._source is not None else []) + super()._source_files()

    def _call(self) -> Callable:
        if self._function is None:
            self._function = load_callable(self.function)[0]
        return self._function

    def _raised(self, sequence: str, error: Exception) -> None:
        self._problems.add("the function raised", f"{type(error).__name__}: {error} for {sequence!r}")
        self._failed(lambda: f"Last: function {self.function} raised {type(error).__name__}: {error} "
                             f"on {sequence!r}")

    def _one(self, sequence: str, call: Callable) -> float | None:
        try:
            value = call(sequence)
        except Exception as error:  # the user's code failing on one sequence is that sequence's problem
            self._raised(sequence, error)
            return None
        self._failures_in_a_row = 0
        return self._number(value, sequence)

    def _batch(self, sequences: list[str], call: Callable) -> list[float | None]:
        try:
            values = list(call(list(sequences)))
            if len(values) != len(sequences):
                raise ValueError(f"returned {len(values)} values for {len(sequences)} sequences")
        except Exception as error:
            if len(sequences) == 1:
                self._raised(sequences[0], error)
                return [None]
            self._problems.add("a batched call failed", f"{type(error).__name__}: {error}")
            return [value for s in sequences for value in self._batch([s], call)]
        self._failures_in_a_row = 0
        return [self._number(v, s) for v, s in zip(values, sequences)]

    def score_uncached(self, strings: Sequence[str]) -> list[tuple[str | None, float | None]]:
        canonical = self.canonical_forms(strings)
        distinct = list(dict.fromkeys(c for c in canonical if c is not None))
        call = self._call()
        value_of: dict[str, float | None] = {}
        # a bar for long in-process runs; none in the pool's workers (the parent shows one per chunk)
        bar = self.progress(None, len(distinct), hidden=len(distinct) < self.progress_threshold
                            or multiprocessing.parent_process() is not None)
        try:
            for start in range(0, len(distinct), self.batch_size):
                part = distinct[start:start + self.batch_size]
                values = self._batch(part, call) if self.batched else [self._one(s, call) for s in part]
                value_of.update(zip(part, values))
                self.save_progress(list(zip(part, values)))
                bar.update(len(part))
        finally:
            bar.close()
            self._problems.flush()
        return [(c, value_of[c] if c is not None else math.nan) for c in canonical]


def _kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def _stop(process: subprocess.Popen) -> None:
    """End a running program and everything it started: SIGTERM to its process group, SIGKILL
    after ``KILL_GRACE`` seconds."""
    _kill_group(process, signal.SIGTERM)
    try:
        process.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(process, signal.SIGKILL)


def _tail(stderr: bytes | None) -> str:
    text = (stderr or b"").decode("utf-8", errors="replace").strip()
    return ("…" + text[-STDERR_TAIL:]) if len(text) > STDERR_TAIL else text


class _BatchFailure(Exception):
    def __init__(self, reason: str, stderr: str):
        super().__init__(reason)
        self.reason, self.stderr = reason, stderr


class ExternalProcess(_UserScorer):
    """A program as an oracle: one sequence per line on its stdin → one number per line on its stdout.

    The program is started once per batch of ``batch_size`` distinct uncached sequences, with the
    argument list ``command`` (no shell), in its own process group. It must print exactly one line
    per input line, in the same order: a number, or an empty / ``nan`` / non-numeric line for a
    sequence it cannot score (invalid). A non-zero exit, a wrong number of lines or no answer
    within ``timeout`` seconds fail the batch: its sequences get the penalty (not cached), the
    program's whole process group is killed, the first failure is logged with the command and the
    tail of its stderr, and scoring goes on — until ``max_consecutive_failures`` batches in a row
    have failed, when :class:`~oracles.base.OracleFailedError` stops the run.

    Args:
        command: the program and its arguments, e.g. ``[python, score.py, --model, m.pkl]``. A
            first element ``python`` (or ``python3``) means the interpreter running rewardfit.
            Relative paths are relative to ``cwd``.
        timeout: seconds one batch may take.
        batch_size: sequences per program run.
        n_workers: programs run at the same time.
        cwd: the program's working directory (default: the current one).
        env: variables added to (or replacing) the inherited environment.
        domain, direction, depends_on, version, max_consecutive_failures: as for
            :class:`PythonFunction` (``max_consecutive_failures`` counts failed batches here). The
            program's own file — ``command[0]`` given as a path, or the script an interpreter runs
            (``command[1]`` when it is a file) — is part of the disk cache's key by its contents;
            list other files it reads (a model) in ``depends_on``.
        transform, penalty, name, cache_size, disk_cache, max_length: as for every
            :class:`~oracles.base.MoleculeOracle`; ``name`` defaults to the script's (or program's)
            file name without its suffix.
    """

    def __init__(self, command: list[str], timeout: float = 60.0, batch_size: int = 64, n_workers: int = 1,
                 cwd: str | None = None, env: dict[str, str] | None = None, domain: str = "smiles",
                 direction: str | None = None, depends_on: list[str] | None = None, version: str | None = None,
                 max_consecutive_failures: int | None = 3,
                 transform: Transform | None = None, penalty: float = 10.0, name: str | None = None,
                 cache_size: int = 200_000, disk_cache: str | None = None, max_length: int = MAX_SMILES_LENGTH):
        if isinstance(command, str) or not isinstance(command, Sequence) or not command:
            raise ValueError(f"command must be a non-empty list of arguments, e.g. [python, score.py], got {command!r}; "
                             "a shell string is not split (no shell is used): write one list item per argument")
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in command):
            raise ValueError(f"command arguments must be strings, got {command!r}")
        command = [str(a) for a in command]
        if cwd is not None and not Path(cwd).expanduser().is_dir():
            raise FileNotFoundError(f"ExternalProcess cwd {cwd!r} is not a directory")
        if env is not None and not isinstance(env, dict):
            raise ValueError(f"env must be a mapping of variable names to values, got {env!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if int(batch_size) < 1 or int(n_workers) < 1:
            raise ValueError(f"batch_size and n_workers must be ≥ 1, got {batch_size} and {n_workers}")
        self.command, self.cwd = command, None if cwd is None else str(cwd)
        self.env = None if env is None else {str(k): str(v) for k, v in env.items()}
        self._executable()  # fails here, naming the command, rather than on every batch
        if name is None:
            name = (self._program_files() or [Path(command[0])])[-1].stem
        super().__init__(_energy_transform(transform, direction), penalty, name, cache_size, n_workers,
                         disk_cache, None, max_length)
        self.timeout, self.batch_size, self.direction = float(timeout), int(batch_size), direction
        self._setup(domain, version, depends_on, max_consecutive_failures)
        self._failed_batches = 0
        self._warned = False

    cache_insensitive = MoleculeOracle.cache_insensitive | {"timeout", "batch_size", "direction",
                                                           "max_consecutive_failures"}

    def _resolve(self, argument: str) -> Path:
        path = Path(argument).expanduser()
        return path if path.is_absolute() else Path(self.cwd or ".").expanduser() / path

    def _executable(self) -> str:
        program = self.command[0]
        if program in ("python", "python3"):
            return sys.executable
        if os.sep in program or (os.altsep and os.altsep in program):
            path = self._resolve(program)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise FileNotFoundError(f"ExternalProcess command[0] {program!r}: {path} is not an executable file")
            return str(path)
        search = (self.env or {}).get("PATH", os.environ.get("PATH"))
        found = shutil.which(program, path=search)
        if found is None:
            raise FileNotFoundError(f"ExternalProcess command[0] {program!r} is not on PATH; give its full path")
        return found

    def _program_files(self) -> list[Path]:
        """``command[0]`` when given as a path, and ``command[1]`` when it is a file (a script)."""
        files = [self._resolve(self.command[0])] if os.sep in self.command[0] else []
        if len(self.command) > 1 and self._resolve(self.command[1]).is_file():
            files.append(self._resolve(self.command[1]))
        return files

    def _source_files(self) -> list[Path]:
        return self._program_files() + super()._source_files()

    @property
    def failed_batches(self) -> int:
        """Batches that failed in this process (non-zero exit, wrong line count, timeout)."""
        return self._failed_batches

    def _score_parallel(self, strings: list[str]):  # threads, not the process pool: see score_uncached
        return self.score_uncached(strings)

    def _run(self, sequences: list[str], running: set, guard: threading.Lock) -> list[float]:
        """The program's values for one batch, or :class:`_BatchFailure`."""
        environment = {**os.environ, **self.env} if self.env is not None else None
        try:
            process = subprocess.Popen([self._executable(), *self.command[1:]], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.cwd,
                                       env=environment, start_new_session=True)
        except OSError as error:
            raise _BatchFailure(f"could not start it ({error})", "") from error
        with guard:
            running.add(process)
        try:
            try:
                out, err = process.communicate(("\n".join(sequences) + "\n").encode(), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _stop(process)
                try:
                    _, err = process.communicate(timeout=KILL_GRACE)
                except subprocess.TimeoutExpired:  # a descendant that left the group holds the pipes
                    err = b""
                raise _BatchFailure(f"no answer within timeout = {self.timeout:g} s; killed", _tail(err)) from None
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C) or failed above: leave nothing running
                _stop(process)
            with guard:
                running.discard(process)
        lines = out.decode("utf-8", errors="replace").splitlines()
        if process.returncode != 0 or len(lines) != len(sequences):
            _kill_group(process)  # anything it left running in its group
            if process.returncode < 0:
                reason = f"killed by signal {signal.Signals(-process.returncode).name}"
            elif process.returncode > 0:
                reason = f"exit status {process.returncode}"
            else:
                reason = f"{len(lines)} output lines for {len(sequences)} input lines"
            raise _BatchFailure(reason, _tail(err))
        return [self._number(line, s) for line, s in zip(lines, sequences)]

    def _batch_failed(self, failure: _BatchFailure, size: int) -> None:
        self._failed_batches += 1
        self._problems.counts["failed batch"] += 1
        details = (f"command {self.command} (cwd {self.cwd or os.getcwd()}) failed on a batch of {size} "
                   f"sequences: {failure.reason}. Its stderr ended: {failure.stderr or '(empty)'}")
        if not self._warned:
            self._warned = True
            log.warning("oracle %r: %s. The batch's sequences get the penalty energy; later failures are logged "
                        "at DEBUG level; %s failed batches in a row stop the run", self.name, details,
                        self.max_consecutive_failures or "no number of")
        else:
            log.debug("oracle %r: %s", self.name, details)
        self._failed(lambda: f"Last: {details}")

    def score_uncached(self, strings: Sequence[str]) -> list[tuple[str | None, float | None]]:
        canonical = self.canonical_forms(strings)
        distinct = list(dict.fromkeys(c for c in canonical if c is not None))
        batches = [distinct[i:i + self.batch_size] for i in range(0, len(distinct), self.batch_size)]
        value_of: dict[str, float | None] = {}
        running: set[subprocess.Popen] = set()
        guard = threading.Lock()  # counters and ``running`` are shared by the worker threads
        stop = threading.Event()

        def work(batch: list[str]) -> list[tuple[str, float | None]]:
            if stop.is_set():
                return []
            try:
                values = self._run(batch, running, guard)
            except _BatchFailure as failure:
                values = [None] * len(batch)
                with guard:
                    try:
                        self._batch_failed(failure, len(batch))
                    except OracleFailedError:
                        stop.set()
                        raise
            else:
                with guard:
                    self._failures_in_a_row = 0
            return list(zip(batch, values))

        def done(pairs: list[tuple[str, float | None]]) -> None:  # in this thread: the disk cache's
            value_of.update(pairs)
            self.save_progress(pairs)
            bar.update(len(pairs))

        bar = self.progress(None, len(distinct), hidden=len(batches) < 2)
        try:
            if self.n_workers == 1 or len(batches) < 2:
                for batch in batches:
                    done(work(batch))
            else:
                with ThreadPoolExecutor(min(self.n_workers, len(batches))) as pool:
                    futures = [pool.submit(work, batch) for batch in batches]
                    try:
                        for future in as_completed(futures):
                            done(future.result())
                    except BaseException:  # a stop, or Ctrl-C: end the programs still running, then leave
                        stop.set()
                        for future in futures:
                            future.cancel()
                        with guard:
                            for process in list(running):
                                _stop(process)
                        raise
        finally:
            bar.close()
            self._problems.flush()
        return [(c, value_of[c] if c is not None else math.nan) for c in canonical]
