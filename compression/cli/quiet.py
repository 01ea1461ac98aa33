"""Third-party noise kept off the terminal while a command runs; ``--verbose`` lets it through.

Standard error carries only the command's refusal. What the libraries print on their own —
torchao's failed loads of CUDA kernels and torch's pytree deprecations (both logged when
transformers imports torchao), transformers' load reports and progress bars, onnxscript's and
the exporters' warnings, TensorFlow's C++ logs under litert-torch — is dropped, and the engine's
own warnings (a batch dimension the exporter fixed, a skipped ONNX pre-processing step) become
``note: ...`` lines on standard output.

Everything here is undone when the command ends, so ``main`` can run in-process (the tests do).
Nothing is imported: ``python -m compression models`` stays as fast as it was.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

# Read when the library first loads or logs, so they are set before any command imports one.
QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar (huggingface_hub's switch)
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ info and warning lines during a TFLite conversion
}
_ENGINE = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def library_noise_filtered(verbose: bool, notes: bool = True) -> Iterator[None]:
    """Drop the libraries' warnings and logs below ERROR for a ``with`` block, unless ``verbose``.

    The engine's own warnings print as ``note: ...`` on standard output when ``notes`` (False
    under ``--json``, whose output is the JSON alone; ``--verbose`` then shows them on stderr).
    """
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(verbose, notes)
        if verbose:
            yield
            return
        disabled = logging.root.manager.disable
        # Every logger, torch's included: torch re-creates its loggers' levels and handlers
        # when it sets up logging, but checks this global threshold first.
        logging.disable(logging.WARNING)
        try:
            with _environment(QUIET_ENVIRONMENT), _progress_bars_hidden():
                yield
        finally:
            logging.disable(disabled)


def import_without_c_stderr(module: str) -> None:
    """Import ``module`` with file descriptor 2 pointed at /dev/null.

    For a library whose import writes to the process's stderr from C++, past Python:
    litert-torch loads TensorFlow, whose absl logging prints "All log messages before
    absl::InitializeLog() ..." and a oneDNN notice on import whatever TF_CPP_MIN_LOG_LEVEL
    says. Only the import is covered: a failure while the command runs still shows.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        importlib.import_module(module)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def library_prints_hidden(verbose: bool) -> Iterator[None]:
    """Standard output of a ``with`` block that only a library writes to (litert-torch's
    conversion steps): dropped, or on stderr with ``verbose``, so stdout stays the command's."""
    with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        yield


def _warning_printer(verbose: bool, notes: bool) -> Callable[..., None]:
    """A ``warnings.showwarning``: the engine's warnings as notes, the libraries' only if verbose."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - as warnings calls it
        if notes and Path(filename).resolve().is_relative_to(_ENGINE):
            print(f"note: {message}", flush=True)
        elif verbose:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    return show


@contextlib.contextmanager
def _progress_bars_hidden() -> Iterator[None]:
    """transformers reads HF_HUB_DISABLE_PROGRESS_BARS once, when it loads: where it was loaded
    before the command (``main`` run in-process), its own switch is turned off for the command."""
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is None or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
