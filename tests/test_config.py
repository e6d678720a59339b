import json
import re

import pytest

from jobs.config import ConfigError, load_config


def test_defaults_hold_the_contract_keys():
    cfg = load_config()
    assert cfg.window_days == 90 and cfg.top_n == 20
    assert cfg.event_weights.as_dict()["purchase"] > cfg.event_weights.as_dict()["product_view"] > 0
    assert cfg.quality.on_volume_anomaly in ("fail", "warn")
    assert (cfg.als.factors, cfg.candidates.n) == (64, 50)


def test_set_overrides_typed_values():
    cfg = load_config(overrides=["als.factors=32", "event_weights.return=-5", "quality.on_volume_anomaly=warn"])
    assert cfg.als.factors == 32
    assert cfg.event_weights.return_ == -5.0
    assert cfg.quality.on_volume_anomaly == "warn"


@pytest.mark.parametrize("override, message", [
    ("als.factor=3", "'als.factor'"),
    ("als.factors=abc", "'als.factors': expected an integer"),
    ("quality.on_volume_anomaly=ignore", "not one of"),
    ("nope=1", "'nope'"),
    ("top_n", "key=value"),
])
def test_bad_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_conf_file_layers_on_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("als:\n  iterations: 3\n")
    cfg = load_config(conf_file=f)
    assert cfg.als.iterations == 3 and cfg.als.factors == 64
    f.write_text("als:\n  iteration: 3\n")
    with pytest.raises(ConfigError, match="als.iteration"):
        load_config(conf_file=f)


def test_fingerprint_tracks_settings_not_location():
    a = load_config(data_root="/a")
    assert a.fingerprint() == load_config(data_root="/b").fingerprint()
    assert a.fingerprint() != load_config(overrides=["top_n=5"]).fingerprint()


def test_the_redis_url_is_neither_stored_with_a_model_nor_fingerprinted():
    plain = load_config()
    with_secret = load_config(overrides=["export.redis_url=redis://:s3cret@cache:6379/0"])
    assert with_secret.fingerprint() == plain.fingerprint()  # rotating a password keeps model_version
    assert "s3cret" not in json.dumps(with_secret.settings(), default=list)


@pytest.mark.parametrize("arms, message", [
    ('[{name: a, share: 0.5, serves: model}, {name: b, share: 0.4, serves: model}]', "add up to 0.9"),
    ('[{name: a, share: 0.5, serves: model}, {name: a, share: 0.5, serves: model}]', "unique"),
    ('[{name: a, share: 1.0, serves: yesterday}]', "serves 'yesterday' is not one of"),
    ('[{name: a, share: 0.5, serves: model}, {name: b, share: 0.5, serves: override, overrides: ["als.factors=8"]}]',
     "must be `rank.<key>=<value>`"),
    ('[{name: a, share: 1.0, serves: model, colour: red}]', "unknown config key 'experiment.arms[0].colour'")])
def test_experiment_arms_are_checked(arms, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(overrides=["experiment.id=e1", f"experiment.arms={arms}"])


def test_several_arms_need_an_experiment_id():
    with pytest.raises(ConfigError, match="experiment.id"):
        load_config(overrides=["experiment.arms=[{name: a, share: 0.5, serves: model}, "
                               "{name: b, share: 0.5, serves: popularity}]"])
    cfg = load_config(overrides=["experiment.id=e1", "experiment.arms=[{name: a, share: 0.5, serves: model}, "
                                 "{name: b, share: 0.5, serves: previous}]"])
    assert [a.serves for a in cfg.experiment.arms] == ["model", "previous"]
