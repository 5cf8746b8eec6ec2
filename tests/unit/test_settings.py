"""Settings that reach the model: parsed and validated at start-up, applied to restored models."""

from __future__ import annotations

import pytest

from streamrec.settings import SIGNALS, Settings, SettingsError
from streamrec.streams.ranking import NAMED
from streamrec.streams.recommender import Recommender
from streamrec.streams.worker import build_recommender


def test_the_settings_know_every_named_signal():
    assert SIGNALS == NAMED


def test_blend_weights_parse_and_reach_a_new_model():
    s = Settings.from_env({"STREAMREC_BLEND_WEIGHTS": " popularity=0.5 ,embedding=0,"})
    assert s.blend_weights == (("popularity", 0.5), ("embedding", 0.0))
    assert Settings.from_env({}).blend_weights == ()
    rec = build_recommender(s)
    rec.set_weights(**dict(s.blend_weights))
    assert rec.config.weights.popularity == 0.5 and rec.config.weights.embedding == 0.0
    assert rec.config.weights.cooccur == 1.0  # the others keep their defaults


@pytest.mark.parametrize(
    "raw, message",
    [
        ("popularty=0.3", "'popularty' is not a signal"),
        ("popularity", "'popularity' is not name=weight"),
        ("popularity=lots", "'lots' is not a number"),
        ("popularity=-1", "outside"),
        ("mf=1,mf=2", "'mf' is given twice"),
    ],
)
def test_bad_blend_weights_name_the_variable_and_the_problem(raw, message):
    with pytest.raises(SettingsError, match="STREAMREC_BLEND_WEIGHTS") as err:
        Settings.from_env({"STREAMREC_BLEND_WEIGHTS": raw})
    assert message in str(err.value)


def test_set_weights_applies_to_a_restored_model_and_rejects_unknown_names():
    rec = Recommender(seed=1)
    clicks = [("ann", "a"), ("ann", "b"), ("bob", "a")] + [(u, "c") for u in ("dan", "eve", "fay")]
    for user, item in clicks:
        rec.learn_click(user, item, ts=0.0)
    assert rec.recommend("bob", k=1)[0][0] == "b"  # co-occurrence leads by default
    back = Recommender.from_bytes(rec.to_bytes())
    back.set_weights(cooccur=0.0, mf=0.0, popularity=1.0)
    assert back.recommend("bob", k=1)[0][0] == "c"  # now the trending item does
    assert rec.recommend("bob", k=1)[0][0] == "b"  # the original is untouched
    with pytest.raises(TypeError):
        back.set_weights(nope=1.0)
