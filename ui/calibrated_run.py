"""Recipes with Wanda, SparseGPT, GPTQ or AWQ: compressed on a Run button, not on every change.

These methods read each layer's inputs on calibration rows: milliseconds on mlp, half a minute
on MiniLM (README, "Calibration-based methods"), too long for a slider move. While the
session's recipe uses one, a page shows what will run and a button; a press compresses with a
progress bar (``compression.compress``'s ``progress``), and the result is kept per recipe
(:func:`ui.cache.compressed`), so a recipe computed before shows at once. A model that cannot
run them (TorchScript, ONNX, no calibration data) gets the engine's refusal, kept per recipe
too, so it is not asked for again.
"""
from __future__ import annotations

import streamlit as st

import compression
from compression.calibration_pass import methods
from compression.recipe import CALIBRATED_PRUNE_METHODS, MAX_CALIBRATION_SAMPLES, MAX_SEED
from ui import cache, controls, state, stores
from ui.model_ids import ModelChoice
from ui.text import t
from ui.text.engine_text import localized


def uses_calibration() -> bool:
    """Whether the session's recipe, its calibration section aside, asks for calibration rows
    (a calibrated method in a section or an override)."""
    rest = {key: value for key, value in state.recipe().items() if key != "calibration"}
    return compression.Recipe.from_dict(rest).calibration is not None


def calibration_row(key_prefix: str, model: compression.LoadedModel) -> None:
    """The calibration samples and seed, where the recipe uses a calibrated method; elsewhere the
    recipe's calibration section is dropped, so a link names rows only when they matter."""
    if not uses_calibration():
        state.set_section("calibration", None)
        return
    current = state.recipe().get("calibration", {})
    row = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
    samples = row.number_input(t("calibrated.samples"), 1, MAX_CALIBRATION_SAMPLES, step=32, width=200,
                               key=controls.seed(f"{key_prefix}_calibration_samples", int(current.get("samples", 128))))
    seed = row.number_input(t("calibrated.seed"), 0, MAX_SEED, step=1, width=200,
                            key=controls.seed(f"{key_prefix}_calibration_seed", int(current.get("seed", 0))))
    if model.calibration is not None:
        row.caption(t("calibrated.rows_from", data=localized(model.calibration.description)))
    state.set_section("calibration", {"samples": int(samples), "seed": int(seed)})


def method_names(recipe: compression.Recipe, model: compression.LoadedModel) -> str:
    """The recipe's calibrated methods as the pages name them: "Wanda", "SparseGPT + GPTQ"."""
    pairs = [(recipe.prune, recipe.quantize), *(recipe.specs_for(name) for name in model.compressible)]
    return " + ".join(t(f"pruning.methods.{name}") if name in CALIBRATED_PRUNE_METHODS
                      else t(f"quantization.schemes.{name}") for name in methods(pairs))


def explain(method: str) -> None:
    """The method's formula and one line on what it does, with its paper."""
    formulas = {"wanda": t("calibrated.wanda_formula"), "sparsegpt": t("calibrated.sparsegpt_formula"),
                "gptq": t("calibrated.gptq_formula"), "awq": t("calibrated.awq_formula")}
    notes = {"wanda": t("calibrated.wanda_note"), "sparsegpt": t("calibrated.sparsegpt_note"),
             "gptq": t("calibrated.gptq_note"), "awq": t("calibrated.awq_note")}
    st.latex(formulas[method])
    st.caption(notes[method])


REFUSALS = stores.CALIBRATION_REFUSALS


def compressed(choice: ModelChoice, model: compression.LoadedModel, key_prefix: str) -> compression.CompressionResult | None:
    """The session recipe's compression: at once where it needs no calibration rows or was
    computed before; otherwise after a press of the Run button. None: not run yet, or refused
    (the page has said why)."""
    if not uses_calibration():
        return controls.compress_current(choice)
    recipe_json = state.recipe_json()
    kept = cache.kept_compression(choice.model_id, choice.data_id, recipe_json)
    if kept is not None:
        return kept
    refusal = REFUSALS.get((choice, recipe_json))
    if refusal is not None:
        st.error(t("errors.lead_in", error=refusal))
        return None
    recipe = compression.Recipe.from_json(recipe_json)
    names = method_names(recipe, model)
    waiting = st.empty()  # what will run and its button, cleared once the result is in
    with waiting.container():
        st.info(t("calibrated.waits", methods=names))
        pressed = st.button(t("calibrated.run", methods=names, samples=recipe.calibration.samples), type="primary",
                            key=f"{key_prefix}_calibrated_run")
    if not pressed:
        return None
    bar = st.progress(0.0, text=t("calibrated.starting"))
    try:
        result = cache.compressed(choice.model_id, choice.data_id, recipe_json, progress=lambda done: bar.progress(
            done, text=t("calibrated.progress", methods=names, done=done)))
    except compression.CompressionError as error:
        REFUSALS.put((choice, recipe_json), str(error))
        st.error(t("errors.lead_in", error=error))
        return None
    finally:
        bar.empty()
    waiting.empty()
    return result
