"""Standard error of ``python -m compression`` carries only errors: the libraries' warnings and
logs are filtered where the command line starts (``--verbose`` lets them through), the engine's
notes go to standard output, and a refusal is one line.

The commands run as real processes: most of the noise is printed while a library imports.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from compression.cli.parser import build_parser
from compression.cli.quiet import library_noise_filtered

ROOT = Path(__file__).resolve().parents[1]
ENGINE_FILE = str(ROOT / "compression" / "io" / "onnx" / "export.py")


def cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "compression", *argv], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-shaped Hugging Face folder (random weights): loading it imports transformers,
    which imports torchao."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, vocab_size=100,
                                      max_position_embeddings=64)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_info(llama_folder: Path) -> subprocess.CompletedProcess[str]:
    return cli("info", str(llama_folder))


def test_a_hugging_face_folder_loads_with_nothing_on_stderr(llama_info: subprocess.CompletedProcess[str]) -> None:
    assert llama_info.returncode == 0, llama_info.stderr
    assert llama_info.stderr == ""
    assert "compressible:" in llama_info.stdout


def test_verbose_lets_the_libraries_speak_on_stderr_only(
    llama_folder: Path, llama_info: subprocess.CompletedProcess[str]
) -> None:
    verbose = cli("--verbose", "info", str(llama_folder))
    assert verbose.returncode == 0
    # Here transformers' loading progress bar, and torchao's failed loads of its CUDA kernels.
    assert verbose.stderr != ""
    assert verbose.stdout == llama_info.stdout


@pytest.mark.parametrize("argv", [("--verbose", "models"), ("models", "--verbose")])
def test_verbose_goes_before_or_after_the_command(argv: tuple[str, ...]) -> None:
    assert build_parser().parse_args(argv).verbose
    assert not build_parser().parse_args(["models"]).verbose


def test_models_and_an_onnx_export_print_nothing_on_stderr(tmp_path: Path) -> None:
    for argv in (("models",), ("export", "mlp", "--format", "onnx", "--out", str(tmp_path / "mlp.onnx"))):
        result = cli(*argv)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", argv


def test_models_imports_neither_transformers_nor_onnx() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "compression", "models"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert result.returncode == 0 and "torch" in imported
    assert not imported & {"transformers", "onnx", "onnxruntime", "onnxscript", "torchao"}


def test_tflite_export_prints_only_where_it_wrote(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch")  # TensorFlow's C++ logging writes on import, past Python
    result = cli("export", "mlp", "--format", "tflite", "--out", str(tmp_path / "mlp.tflite"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [f"wrote {tmp_path / 'mlp.tflite'} (TFLite, float32 weights as compressed)"]


@pytest.mark.parametrize(
    "argv",
    [
        ("export", "mlp", "--int8", "static", "--out", "x.onnx"),  # argparse's refusal
        ("info",),
        ("info", "weights.pt"),  # a state_dict of no zoo architecture
        ("info", "."),  # a folder with no config.json
    ],
)
def test_bad_input_is_one_line_on_stderr_and_nothing_else(tmp_path: Path, argv: tuple[str, ...]) -> None:
    import torch

    torch.save({"encoder.weight": torch.zeros(3, 4), "encoder.bias": torch.zeros(3)}, tmp_path / "weights.pt")
    result = cli(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert len(result.stderr) <= 300
    assert len((result.stdout + result.stderr).splitlines()) <= 2


def test_the_engines_warnings_become_notes_on_stdout(capsys: pytest.CaptureFixture) -> None:
    with library_noise_filtered(verbose=False):
        warnings.warn_explicit("the batch dimension is static", UserWarning, ENGINE_FILE, 1)
        warnings.warn_explicit("a library deprecation", FutureWarning, "/elsewhere/library.py", 1)
    captured = capsys.readouterr()
    assert captured.out == "note: the batch dimension is static\n"
    assert captured.err == ""


def test_under_json_the_notes_show_only_with_verbose(capsys: pytest.CaptureFixture) -> None:
    with library_noise_filtered(verbose=False, notes=False):
        warnings.warn_explicit("the batch dimension is static", UserWarning, ENGINE_FILE, 1)
    assert capsys.readouterr() == ("", "")
    with library_noise_filtered(verbose=True, notes=False):
        warnings.warn_explicit("the batch dimension is static", UserWarning, ENGINE_FILE, 1)
    captured = capsys.readouterr()
    assert captured.out == "" and "the batch dimension is static" in captured.err
