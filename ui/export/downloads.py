"""The Export page's first section: the packed file, the dense weights and the recipe to
download, and the command lines that redo them."""
from __future__ import annotations

import json
from typing import NamedTuple

import streamlit as st

import compression
from compression.cli.command_lines import command_line
from compression.packing import dense_safetensors
from ui.model_ids import FOLDED_PREFIX, SERVER_PREFIX, UPLOAD_PREFIX, ModelChoice, load_options
from ui.text import t


class CommandModel(NamedTuple):
    """The model as the command lines name it (a path for an upload, the fused .pt2 for a folded
    model) and the options that load it as the session does (``--family``, ``--input-shape``)."""

    source: str
    options: dict[str, str | None]


def render(choice: ModelChoice, result: compression.CompressionResult, stem: str) -> CommandModel:
    """Draw the section; return the model as the command lines name it, for the later sections'."""
    recipe_text = json.dumps(result.report.recipe, indent=2)
    columns = st.columns(3)
    columns[0].download_button(t("export.packed"), result.packed.to_bytes(), file_name=f"{stem}.packed",
                               mime="application/octet-stream", type="primary")
    columns[1].download_button(t("export.dense"),
                               dense_safetensors(result.module.state_dict()),
                               file_name=f"{stem}-dense.safetensors", mime="application/octet-stream")
    columns[2].download_button(t("export.recipe_file"), recipe_text, file_name=f"{stem}-recipe.json", mime="application/json")

    st.subheader(t("export.command_line"))
    unfolded = choice.model_id.removeprefix(FOLDED_PREFIX)
    loaded = load_options(unfolded)
    source = loaded.source_id if not loaded.source_id.startswith((UPLOAD_PREFIX, SERVER_PREFIX)) else \
        f"path/to/{ModelChoice(loaded.source_id, None).name}"
    # The line takes one --input-shape; sizes of several inputs are left to the user.
    shapes = [f"{name}={','.join(map(str, sizes))}" for name, sizes in loaded.input_shapes.items()]
    options = {"family": loaded.family, "input_shape": shapes[0] if len(shapes) == 1 else None}
    setup = []
    if unfolded != choice.model_id:  # the CLI folds BatchNorm into a .pt2 first
        setup = [command_line("fuse", source, out=f"{stem}.pt2", **options)]
        source, options = f"{stem}.pt2", {"family": loaded.family}
    data = "path/to/" + choice.data_id.rsplit("/", 1)[-1] if choice.data_id else None
    apply = command_line("apply", source, recipe=json.dumps(result.report.recipe, separators=(",", ":")),
                         out=f"{stem}.packed", dense_out=f"{stem}-dense.safetensors", data=data, **options)
    st.code("\n".join([*setup, apply]), language="bash")
    st.caption(t("export.command_note"))
    st.subheader(t("export.recipe"))
    st.code(recipe_text, language="json")
    return CommandModel(source, options)
