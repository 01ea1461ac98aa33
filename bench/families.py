"""One model per family, scored by its family's metric before and after the same recipe.

Run ``python bench/families.py`` from the repository root (about a minute on 2 cores). It
prints one row per model: ``family | model | metric | baseline → after`` for 50 % global
magnitude pruning + 4-bit symmetric per-channel linear quantization, measured in this run:

- tinylm (causal LM), minilm (text encoder), mlp (classifier) and simplenet (image
  classifier): the zoo's real weights and data (held-out text, the corpus, held-out digits);
- a tiny T5 (seq2seq, random init) given the sample LM's tokenizer: teacher-forced perplexity
  on the same held-out text;
- a tiny ViT image classifier (random init): top-1 agreement on generated images;
- a multi-output graph: a tiny ViTModel exported to ONNX by the lab (last_hidden_state and
  pooler_output), loaded back as ``other``: the fidelity of every output.

The random-init models come from ``tests/tiny_models.py``, as the tests build them.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compression  # noqa: E402
from compression.cli.quiet import library_noise_filtered  # noqa: E402
from compression.io.onnx.export import export_onnx  # noqa: E402
from tests.tiny_models import HALF_AND_4_BIT, save_tiny_model  # noqa: E402

RECIPE = {"prune": {**HALF_AND_4_BIT["prune"], "method": "magnitude"},
          "quantize": {**HALF_AND_4_BIT["quantize"], "granularity": "per_channel"}}


def sources(folder: Path) -> list[tuple[str, str]]:
    """(label, load_model source) of each model, the files of the random-init ones written in ``folder``."""
    t5 = save_tiny_model("t5", folder / "t5", tokenizer=True)
    vit = save_tiny_model("vit", folder / "vit")
    graph = folder / "vit_base.onnx"
    graph.write_bytes(export_onnx(compression.load_model(save_tiny_model("vit_base", folder / "vit_base"))))
    return [
        ("tinylm", "tinylm"), ("minilm", "minilm"), ("mlp", "mlp"), ("simplenet", "simplenet"),
        ("tiny T5 + tinylm tokenizer (random init)", str(t5)),
        ("tiny ViT classifier (random init)", str(vit)),
        ("tiny ViTModel as ONNX, 2 outputs", str(graph)),
    ]


def row(label: str, source: str) -> list[str]:
    model = compression.load_model(source)
    baseline = compression.evaluate(model)
    scored = compression.evaluate(model, compression.compress(model, RECIPE).module)
    extras = ", ".join(f"{name} {value:.3f}" for name, value in scored.extras.items())
    after = f"{scored.value:.4f}" + (f" ({extras})" if extras else "")
    return [model.family, label, scored.metric, f"{baseline.value:.4f} → {after}"]


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, library_noise_filtered(verbose=False, notes=False):
        rows = [row(label, source) for label, source in sources(Path(folder))]
    header = ["family", "model", "metric", "baseline → after 50 % global magnitude + 4-bit per-channel"]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * width for width in widths], *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
