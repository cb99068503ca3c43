"""The Trainer's checks on the exported SavedModel, each seen failing for its own reason: the
session run's model exported again with one step of its signatures changed, as a bug in the
export would change it.

- export_skew: serving_default loses one raw feature (the serving path fills it with zeros),
  so the served scores leave the training input path's;
- feature_code: transform_features maps vocabulary entries one line off and scales a number
  downwards;
- explain: transform_features doubles one number, still finite and increasing (the feature
  code tests pass), so the score rebuilt from what explain shows is not the served score.

Each runs on the session run (`trained_listening`) and shares its xdist group."""

import os

import pytest
import tensorflow as tf

from tandem.components import build_record
from tandem.components import exported_model_checks as exported
from tandem.components import model_checks as mc
from tandem.components.build_record import load_record
from tandem.components.features import CATEGORICAL, NUMERIC, model_features

pytestmark = pytest.mark.xdist_group("trained_listening")


@pytest.fixture(scope="module")
def session(trained_listening):
    """(Keras model, Transform output, build record, raw eval records, eval file pattern)."""
    import tensorflow_transform as tft

    outputs = trained_listening.outputs
    model = tf.keras.models.load_model(os.path.join(outputs["model"].uri, "Format-Serving"))
    transform_output = tft.TFTransformOutput(outputs["transform_graph"].uri)
    record = load_record(trained_listening.pushed)
    files = [os.path.join(outputs["examples"].uri, "Split-eval", "*")]
    return model, transform_output, record, mc.raw_records(files, 200), files


def _first(record: dict, kind: str) -> str:
    return next(n for n, s in record["transform"]["features"].items() if s["kind"] == kind)


def _export(session, path, serve=lambda t: t, transform=lambda t: t):
    """The session's model saved as the Trainer saves it (serving_default on raw serialized
    examples, transform_features, the build record), with `serve` applied to the transformed
    features inside serving_default and `transform` to transform_features' output."""
    model, transform_output, record, _, _ = session
    model.tft_layer = transform_output.transform_features_layer()
    raw_spec = transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != record["label"]}
    names = list(model.input.keys())
    examples = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def serving_default(examples):
        transformed = serve(dict(model.tft_layer(tf.io.parse_example(examples, serving_spec))))
        return {"probabilities": model({k: transformed[k] for k in names})}

    @tf.function(input_signature=[examples])
    def transform_features(examples):
        return transform(dict(model.tft_layer(tf.io.parse_example(examples, raw_spec))))

    model.save(str(path), save_format="tf", signatures={
        "serving_default": serving_default.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function()})
    build_record.write(str(path), record)
    return tf.saved_model.load(str(path))


def _skew(session, loaded) -> dict:
    model, transform_output, record, raw, files = session
    return exported.export_skew(loaded, model, transform_output, raw, files, record["problem_type"],
                          (0.0, 1.0), tolerance=1e-5)


def test_a_serving_signature_that_drops_a_feature_fails_export_skew(session, tmp_path):
    _, _, record, raw, _ = session
    assert _skew(session, _export(session, tmp_path / "same"))["passed"]
    lost = _first(record, NUMERIC)
    skewed = _export(session, tmp_path / "skewed",
                     serve=lambda t: {**t, lost: tf.zeros_like(t[lost])})
    found = _skew(session, skewed)
    assert not found["passed"] and found["gate"] and found["check"] == "export_skew"
    assert found["examples"] == len(raw) == 200 and found["max_abs_diff"] > 1e-3
    assert found["summary"] == (
        f"200 eval examples: serving signature vs training input path, max |difference| "
        f"{found['max_abs_diff']:.2e} (tolerance 1e-05)")


def test_a_broken_feature_function_fails_the_feature_code_tests(session, tmp_path):
    _, transform_output, record, raw, _ = session
    plan = {"features": record["transform"]["features"]}
    word, number = _first(record, CATEGORICAL), _first(record, NUMERIC)
    assert exported.feature_code(_export(session, tmp_path / "same"), transform_output, plan,
                           raw[0])["passed"]
    broken = _export(session, tmp_path / "broken", transform=lambda t: {
        **t, word: t[word] + 1, number: -t[number]})
    found = exported.feature_code(broken, transform_output, plan, raw[0])
    assert not found["passed"] and found["gate"] and found["check"] == "feature_code"
    assert found["failures"][0].startswith(f"{word}: vocabulary entries map to [1, 2, ")
    assert found["failures"][0].endswith("..., not to their lines")
    assert any(f.startswith(f"{number}: scaling is not increasing") for f in found["failures"])
    assert found["summary"].startswith(
        f"{found['tests']} feature code tests on {len(model_features(plan))} features; "
        f"{len(found['failures'])} failed: {word}: ")


def test_explain_that_shows_other_features_than_were_served_fails(session, tmp_path):
    _, transform_output, record, raw, _ = session
    plan = {"features": record["transform"]["features"]}
    same = tmp_path / "same"
    _export(session, same)
    assert exported.explained(str(same), raw[0])["passed"]
    number = _first(record, NUMERIC)
    doubled = tmp_path / "doubled"
    loaded = _export(session, doubled, transform=lambda t: {**t, number: 2.0 * t[number]})
    assert exported.feature_code(loaded, transform_output, plan, raw[0])["passed"]
    assert _skew(session, loaded)["passed"]
    found = exported.explained(str(doubled), raw[0])
    assert not found["passed"] and found["check"] == "explain"
    assert found["max_abs_diff"] > 1e-5 and found["examples"] == 1
    assert found["summary"].startswith("one eval example traced raw (")
    assert found["summary"].endswith(f"(|difference| {found['max_abs_diff']:.1e}, tolerance "
                                     "1e-05)")
