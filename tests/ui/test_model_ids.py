"""How the dashboard names a model: sizes given for its inputs and the family chosen for it are
part of its id."""
from __future__ import annotations

from ui.model_ids import ModelChoice, input_shapes, linkable, load_options, with_family, with_input_shapes


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


def test_a_chosen_family_and_given_sizes_are_both_kept_whichever_is_set_first() -> None:
    shapes = {"images": (1, 3, 64, 64)}
    family_first = with_input_shapes(with_family("upload/ab12/detector.onnx", "other"), shapes)
    sizes_first = with_family(with_input_shapes("upload/ab12/detector.onnx", shapes), "other")
    assert family_first == sizes_first
    assert load_options(family_first) == ("upload/ab12/detector.onnx", "other", shapes)


def test_no_family_gives_the_model_as_detected_again() -> None:
    assert with_family(with_family("tinylm", "other"), None) == "tinylm"
    assert load_options("tinylm") == ("tinylm", None, {})


def test_a_folded_models_family_applies_to_the_model_before_folding() -> None:
    assert with_family("folded/bn_cnn", "other") == "folded/family/other/bn_cnn"
    assert ModelChoice("folded/family/other/bn_cnn", None).name == "bn_cnn-bn-folded"


def test_a_model_loaded_as_another_family_keeps_its_name_and_says_which_family() -> None:
    choice = ModelChoice(with_family("upload/ab12/my-llama", "image_classifier"), None)
    assert choice.name == "my-llama"
    assert choice.label == "my-llama (as image classifier)"


def test_a_link_may_name_a_sample_model_as_a_known_family_only() -> None:
    assert linkable("family/other/tinylm") and linkable("folded/family/classifier/bn_cnn")
    assert not linkable("family/no_such_family/tinylm")
    assert not linkable("family/other/upload/ab12/model.pt")
    assert not linkable("shaped/x=1%2C8/tinylm")
