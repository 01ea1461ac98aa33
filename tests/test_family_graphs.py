"""Every model family end to end: one model per family through the command line (info, eval,
apply, unpack, export), and the graphs such models export (.pt2 from torch.export, ONNX from
``export``) loaded back as their family, scored by its metric and compressed.

The ONNX files are the command line's own exports, made once per family (an export takes
seconds); the .pt2 programs are torch.export programs of small wrappers, as a user writes them.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import compression
from compression.cli import EXIT_BAD_INPUT, main
from compression.io import families
from compression.io.families import METRIC_WITHOUT_DATA
from compression.metrics import (
    ACCURACY,
    AGREEMENT,
    COSINE,
    NEXT_TOKEN_AGREEMENT,
    OUTPUT_COSINE,
    RELATIVE_ERROR,
    output_tensors,
)
from tests.tensor_checks import assert_bitwise_equal
from tests.tiny_models import ARCHITECTURES, HALF_AND_4_BIT, TOKENIZER_VOCAB, save_tiny_model, tiny_model

pytest.importorskip("transformers")
RECIPE = json.dumps(HALF_AND_4_BIT)

# family → (model: a tiny folder of tests.tiny_models or a zoo name, its metric without data)
CLI_MODELS = {
    families.TEXT_ENCODER: ("bert", COSINE),
    families.CAUSAL_LM: ("llama", NEXT_TOKEN_AGREEMENT),  # its LM head is tied to the embeddings
    families.SEQ2SEQ: ("bart", NEXT_TOKEN_AGREEMENT),  # T5 does not export to ONNX: see below
    families.IMAGE_CLASSIFIER: ("vit", AGREEMENT),
    families.CLASSIFIER: ("mlp", ACCURACY),  # the zoo's, with its labelled digits
    families.OTHER: ("vit_base", OUTPUT_COSINE),  # a ViTModel: last_hidden_state and pooler_output
}

# graph → (tiny model, its inputs, the output fields the graph returns, family and metric of the graph)
GRAPHS = {
    "causal_lm": ("llama", ("input_ids",), ("logits",), families.CAUSAL_LM, NEXT_TOKEN_AGREEMENT),
    "image_classifier": ("vit", ("pixel_values",), ("logits",), families.IMAGE_CLASSIFIER, AGREEMENT),
    # token ids in, hidden states out (or, from the folder's export, pooled embeddings): fidelity
    "text_encoder": ("bert", ("input_ids", "attention_mask"), ("last_hidden_state",), families.OTHER, OUTPUT_COSINE),
    "multi_output": ("vit_base", ("pixel_values",), ("last_hidden_state", "pooler_output"), families.OTHER,
                     OUTPUT_COSINE),
}
GRAPH_FAMILY = {graph: next(family for family, (name, _) in CLI_MODELS.items() if name == model)
                for graph, (model, *_) in GRAPHS.items()}


def cli(*argv: str) -> tuple[int, str, str]:
    """``python -m compression ...`` in this process: status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class Graph(torch.nn.Module):
    """A Hugging Face model as a graph of plain tensors: its inputs by position, the named
    fields of its output (one tensor, or a tuple)."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        output = self.model(**dict(zip(self.inputs, tensors)))
        fields = tuple(output[name] for name in self.outputs)
        return fields[0] if len(fields) == 1 else fields


def example_inputs(model: torch.nn.Module, inputs: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "input_ids": lambda: torch.randint(0, model.config.vocab_size, (2, 16), generator=generator),
        "attention_mask": lambda: torch.ones(2, 16, dtype=torch.int64),
        "pixel_values": lambda: torch.randn(2, 3, 32, 32, generator=generator),
    }
    return tuple(tensors[name]() for name in inputs)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def source(workdir):
    """The command-line source of a model: a tiny folder, saved on first use, or a zoo name."""
    saved: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in saved:
            saved[name] = str(save_tiny_model(name, workdir / name)) if name in ARCHITECTURES else name
        return saved[name]

    return get


@pytest.fixture(scope="module")
def onnx_export(source, workdir):
    """``export --format onnx --json`` of a family's model, run once: status, stdout, stderr, file."""
    done: dict[str, tuple[int, str, str, Path]] = {}

    def export(family: str) -> tuple[int, str, str, Path]:
        if family not in done:
            name = CLI_MODELS[family][0]
            target = workdir / f"{name}.onnx"
            done[family] = (*cli("export", source(name), "--format", "onnx", "--out", str(target), "--json"), target)
        return done[family]

    return export


@pytest.fixture(scope="module")
def graph_file(workdir, onnx_export):
    """A graph's file: its torch.export program (dynamic batch), or the ONNX export of its family's model."""
    written: dict[str, Path] = {}

    def get(graph: str, suffix: str) -> Path:
        if suffix == "onnx":
            status, _, err, target = onnx_export(GRAPH_FAMILY[graph])
            assert status == 0, err
            return target
        if graph not in written:
            name, inputs, outputs, _, _ = GRAPHS[graph]
            module = Graph(tiny_model(name), inputs, outputs).eval()
            batch = torch.export.Dim("batch")  # forward(*tensors): the inputs are one tuple argument
            program = torch.export.export(module, example_inputs(module.model, inputs),
                                          dynamic_shapes=(tuple({0: batch} for _ in inputs),))
            written[graph] = workdir / f"{graph}.pt2"
            torch.export.save(program, written[graph])
        return written[graph]

    return get


@pytest.mark.parametrize("family", CLI_MODELS)
def test_each_family_goes_through_the_command_line(family, source, onnx_export, workdir) -> None:
    name, metric = CLI_MODELS[family]
    model = source(name)
    status, out, err = cli("info", model, "--json")
    info = json.loads(out)
    assert (status, err) == (0, "")
    assert (info["family"], info["metric"]) == (family, metric) and isinstance(info["inputs"], list)

    status, out, _ = cli("eval", model, "--json")
    scored = json.loads(out)
    assert status == 0 and scored["metric"] == metric
    assert scored["value"] == scored["baseline_value"] == info["baseline_value"]

    packed, dense = workdir / f"{name}.packed", workdir / f"{name}.safetensors"
    status, out, _ = cli("apply", model, "--recipe", RECIPE, "--out", str(packed), "--json")
    report = json.loads(out)
    assert status == 0 and report["metric"] == metric and report["file_bytes"] == packed.stat().st_size
    assert report["sparsity"] == pytest.approx(0.5, abs=0.01)

    status, out, _ = cli("unpack", str(packed), "--dense-out", str(dense))
    assert status == 0 and dense.exists()
    module = dense_weights_loaded_bit_for_bit(model, dense)
    if family == families.CAUSAL_LM:  # the tied head comes back as the embeddings, under both names
        assert module.lm_head.weight is module.get_input_embeddings().weight
        assert {"lm_head.weight", "model.embed_tokens.weight"} <= set(load_file(dense))

    status, out, err, onnx_file = onnx_export(family)
    exported = json.loads(out)
    assert (status, err) == (0, "") and exported["file_bytes"] == onnx_file.stat().st_size
    # The float export of the uncompressed model scores its baseline, up to rounding.
    assert exported["metric"] == metric and exported["value"] == pytest.approx(exported["baseline_value"], abs=1e-3)


def dense_weights_loaded_bit_for_bit(source: str, dense: Path) -> torch.nn.Module:
    """The model with the unpacked weights loaded (every tensor named, none missing), checked
    equal bit for bit to the compressed module's."""
    model = compression.load_model(source)
    compressed = compression.compress(model, HALF_AND_4_BIT).module
    module = copy.deepcopy(model.module)  # the loaded model is shared read-only
    module.load_state_dict(load_file(dense))
    assert_bitwise_equal(module.state_dict(), compressed.state_dict())
    return module


def test_t5_does_not_export_to_onnx_and_says_why_in_one_line(source, workdir) -> None:
    # The dynamo exporter lowers T5 attention's reshape of a transposed tensor to a view that
    # its strides do not allow (torch.export itself traces it): the export is refused.
    target = workdir / "t5.onnx"
    status, out, err = cli("export", source("t5"), "--format", "onnx", "--out", str(target))
    assert status == EXIT_BAD_INPUT and out == "" and not target.exists()
    assert err.startswith("error: 't5' could not be exported to ONNX (") and err.count("\n") == 1 and len(err) < 400


@pytest.mark.parametrize("suffix", ["pt2", "onnx"])
@pytest.mark.parametrize("graph", GRAPHS)
def test_a_graph_loads_as_its_family_and_compresses_under_its_metric(graph, suffix, graph_file) -> None:
    _, inputs, _, family, metric = GRAPHS[graph]
    model = compression.load_model(graph_file(graph, suffix))
    assert (model.family, model.evaluation.metric) == (family, metric)
    assert len(model.input_specs) == len(inputs)  # what `info` lists
    baseline = compression.evaluate(model)
    result = compression.compress(model, HALF_AND_4_BIT)
    scored = compression.evaluate(model, result.module)
    assert baseline.value == 1.0 and scored.metric == metric and 0 < scored.value <= 1
    assert result.report.sparsity == pytest.approx(0.5, abs=0.01)
    assert 0 < result.report.encoded_bytes < result.report.dense_fp32_bytes
    if family == families.OTHER:
        assert scored.extras[RELATIVE_ERROR] > 0
    if family == families.CAUSAL_LM:  # random ids over the whole vocabulary, not one id repeated
        (ids,) = model.evaluation.inputs
        assert ids.unique().numel() > TOKENIZER_VOCAB // 2 and int(ids.max()) < TOKENIZER_VOCAB
        assert scored.value < 1  # a single id everywhere would keep every next token


@pytest.mark.parametrize("suffix", ["pt2", "onnx"])
def test_every_output_of_a_multi_output_graph_is_scored(suffix, graph_file) -> None:
    model = compression.load_model(graph_file("multi_output", suffix))
    outputs = output_tensors(model.module(*model.example_inputs))
    assert [tuple(tensor.shape[1:]) for tensor in outputs] == [(17, 32), (32,)]


@pytest.mark.parametrize("graph, family", [
    ("causal_lm", families.OTHER),
    ("image_classifier", families.OTHER),
    ("text_encoder", families.TEXT_ENCODER),
    ("multi_output", families.CLASSIFIER),
])
def test_a_family_given_overrides_the_graph_s_and_sets_its_metric(graph, family, graph_file) -> None:
    model = compression.load_model(graph_file(graph, "onnx"), family=family)
    assert (model.family, model.evaluation.metric) == (family, METRIC_WITHOUT_DATA[family])
    scored = compression.evaluate(model, compression.compress(model, HALF_AND_4_BIT).module)
    assert scored.metric == METRIC_WITHOUT_DATA[family] and scored.baseline_value == 1.0
