"""compression.display_text: English text that also carries the code a dashboard translates."""
from __future__ import annotations

import copy
import json
import pickle

import compression
from compression.display_text import DisplayText


def test_a_display_text_is_its_english_string_for_every_other_reader():
    text = DisplayText("training_digits", "1347 training digits", count=1347)
    assert text == "1347 training digits" and hash(text) == hash("1347 training digits")
    assert json.dumps({"data": text}) == '{"data": "1347 training digits"}'


def test_it_keeps_its_code_and_values_through_pickle_and_copies():
    text = DisplayText("token_windows", "3 windows", count=3, source=DisplayText("corpus_sentences", "corpus sentences"))
    for again in (pickle.loads(pickle.dumps(text)), copy.deepcopy(text)):
        assert (again, again.code, again.values["count"]) == (text, "token_windows", 3)
        assert again.values["source"].code == "corpus_sentences"


def test_a_string_built_from_one_is_a_plain_string():
    built = f"{DisplayText('corpus_sentences', 'corpus sentences')}; folded"
    assert type(built) is str


def test_the_sample_models_data_carry_codes():
    model = compression.load_model("simplenet")
    assert (model.description.code, model.evaluation.description.code, model.training.description.code) == \
        ("zoo_model", "heldout_digits", "training_digits")
    assert model.evaluation.description.values == {"count": 450}
