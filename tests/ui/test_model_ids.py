"""How the dashboard names a model: sizes given for its inputs are part of its id."""
from __future__ import annotations

from ui.model_ids import ModelChoice, input_shapes, with_input_shapes


def test_sizes_given_for_inputs_round_trip_through_the_id_even_with_slashes_in_names() -> None:
    shapes = {"serving_default/x:0": (1, 3, 320, 320), "sr": (1,)}
    model_id = with_input_shapes("upload/ab12/detector.onnx", shapes)
    assert input_shapes(model_id) == ("upload/ab12/detector.onnx", shapes)


def test_new_sizes_replace_the_old_ones_and_none_give_the_model_as_its_file_describes_it() -> None:
    shaped = with_input_shapes("upload/ab12/detector.onnx", {"images": (1, 3, 320, 320)})
    reshaped = with_input_shapes(shaped, {"images": (2, 3, 256, 256)})
    assert input_shapes(reshaped) == ("upload/ab12/detector.onnx", {"images": (2, 3, 256, 256)})
    assert with_input_shapes(reshaped, {}) == "upload/ab12/detector.onnx"


def test_a_shaped_model_keeps_its_own_name_with_the_sizes() -> None:
    model_id = with_input_shapes("upload/ab12/detector.onnx", {"images": (1, 3, 320, 320)})
    assert ModelChoice(model_id, None).label == "detector.onnx (images=1,3,320,320)"
