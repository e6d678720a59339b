"""One typed, validated config object for a run.

`conf/default.yaml` holds every key with its default; `load_config` layers a user file and
`--set key=value` overrides on top and checks each key and type, so a typo fails loudly with the key's name.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_CONF = Path(__file__).resolve().parents[1] / "conf" / "default.yaml"


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type."""


@dataclass(frozen=True)
class EventWeights:
    product_view: float
    category_view: float
    search: float
    add_to_cart: float
    remove_from_cart: float
    purchase: float
    return_: float  # `return` in YAML
    login: float
    rec_impression: float
    rec_click: float

    def as_dict(self) -> dict[str, float]:
        return {f.name.rstrip("_"): getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class InteractionsConfig:
    half_life_days: float


@dataclass(frozen=True)
class QualityConfig:
    on_volume_anomaly: str
    late_arrival_hours: float
    max_quarantine_share: float
    volume_min_ratio: float
    device_min_ratio: float
    min_catalog_category_coverage: float
    min_catalog_price_coverage: float
    # added by the validate stage (quality/): severities (`fail` | `warn`) and thresholds of the batch gates
    on_schema_drift: str
    on_missing_partition: str
    on_quarantine_share: str
    on_unknown_items: str
    on_missing_identity: str
    on_catalog_coverage: str
    volume_max_ratio: float
    min_history_days: int
    device_min_share: float
    max_unknown_item_share: float
    max_no_identity_share: float
    # optional catalog attributes judged against the shop's own trailing coverage (not an absolute minimum)
    catalog_attributes: tuple[str, ...]
    catalog_attribute_min_ratio: float
    catalog_attribute_min_baseline: float
    # inputs as producers send them: re-deliveries under new ids, timestamps without zone, personal fields
    content_duplicate_max_share: float
    on_content_duplicates: str
    naive_timestamps: str
    quarantine_keep_personal: bool


@dataclass(frozen=True)
class ActivityConfig:
    max_events_per_id_day: int
    max_weight_per_person_item: float


@dataclass(frozen=True)
class IdentityConfig:
    hub_max_accounts: int
    max_iterations: int
    email_max_accounts: int
    email_max_devices: int


@dataclass(frozen=True)
class AlsConfig:
    factors: int
    iterations: int
    regularization: float
    alpha: float
    threads: int
    engine: str  # implicit (one node) | spark (Spark MLlib ALS on the executors: jobs.models.spark_als)


@dataclass(frozen=True)
class IndexConfig:
    """How the nightly item index searches (`jobs.models.ann.index_plan`): `method` auto picks from the table
    in ann.py by catalog size; 0 in a number means "from the table"."""
    method: str
    exact_below: int
    leaves: int
    leaves_to_search: int
    soar_lambda: float
    anisotropic_threshold: float
    reorder: int
    training_sample_size: int


@dataclass(frozen=True)
class CandidatesConfig:
    n: int
    index: IndexConfig
    batch_persons: int
    recall_sample_persons: int


@dataclass(frozen=True)
class ContentConfig:
    """Content vectors for items with too little history (`jobs.models.content`)."""
    min_interactions: int   # an item keeps its learned vector once this many persons interacted with it
    ridge_alpha: float
    max_features: int
    norm_quantile: float    # content vectors get this quantile of the learned vectors' lengths (0: as predicted)


@dataclass(frozen=True)
class CoverageConfig:
    """The long-tail control on published person lists (`jobs.coverage`)."""
    max_item_share: float   # no item in more than this share of the person lists (0: off)
    pool_extra: int         # ranked items per person beyond top_n that may replace capped ones


@dataclass(frozen=True)
class ColdStartConfig:
    """New shoppers and thin histories (`jobs.coldstart`)."""
    thin_history_events: int  # a person with fewer events blends their profile's list into their own
    profile_weight: float     # how much the profile's list weighs for a person with no history at all


@dataclass(frozen=True)
class FiltersConfig:
    """What never reaches a person's list (`jobs.exclusions`)."""
    bought_lookback_days: int
    exclude_returned: bool


@dataclass(frozen=True)
class RankerConfig:
    """The learned ranker (jobs/ranking/ltr.py): trained each night on the night's holdout, served only when it
    beats the retrieval order on its validation persons by `min_gain` (relative NDCG@k)."""
    enabled: bool
    max_train_persons: int
    validation_share: float
    min_gain: float
    k: int
    trees: int
    learning_rate: float
    num_leaves: int
    min_data_in_leaf: int


@dataclass(frozen=True)
class BusinessConfig:
    """Bounded score adjustments after the ranker (jobs/ranking/business.py), in units of the person's 0..1
    relevance; the total is clipped to +-max_adjustment."""
    margin_weight: float
    stock_weight: float
    low_stock_qty: int
    max_adjustment: float


@dataclass(frozen=True)
class DiversityConfig:
    """MMR over leaf categories after the business terms (jobs/ranking/diversity.py), page by page (`depth`
    positions a page); strength 0 turns it off."""
    strength: float
    depth: int


@dataclass(frozen=True)
class RankConfig:
    relevance_weight: float
    popularity_weight: float
    margin_weight: float
    max_per_category: int
    ranker: RankerConfig
    business: BusinessConfig
    diversity: DiversityConfig


@dataclass(frozen=True)
class GateConfig:
    enabled: bool
    holdout_days: int
    k: int
    min_lift_over_popularity: float
    max_drop_vs_previous: float
    test_event_types: tuple[str, ...]
    max_test_persons: int
    # the gate stage's own rules (jobs/stages/gate.py)
    min_test_persons: int
    popularity_windows_days: tuple[int, ...]
    max_holdout_days: int
    # which holdout the interactions stage cuts (jobs/evaluation/person_split.py, README "Which holdout")
    holdout: str = "auto"
    auto_max_stretch: int = 2
    per_person_share: float = 0.2
    per_person_min_items: int = 5

    def __post_init__(self):
        if not 0 < self.per_person_share < 1:
            raise ConfigError(f"config key 'gate.per_person_share': expected 0 < share < 1, got {self.per_person_share}")
        if self.per_person_min_items < 2:
            raise ConfigError(f"config key 'gate.per_person_min_items': expected at least 2 (one item to hold out, "
                              f"one to learn from), got {self.per_person_min_items}")
        if self.auto_max_stretch < 1:
            raise ConfigError(f"config key 'gate.auto_max_stretch': expected at least 1, got {self.auto_max_stretch}")


@dataclass(frozen=True)
class TuningConfig:
    """Self-tuning nights (the `tune` stage): how long and how widely to search, and when to adopt."""
    enabled: bool
    budget_seconds_wide: float
    budget_seconds_warm: float
    full_every_days: int
    min_relative_gain: float
    max_test_persons: int
    max_trials: int
    min_trials_wide: int
    patience_trials: int
    method: str


@dataclass(frozen=True)
class SegmentsConfig:
    dimensions: tuple[str, ...]
    min_events: int


@dataclass(frozen=True)
class ExportConfig:
    keep_versions: int
    redis_url: str


@dataclass(frozen=True)
class PublishConfig:
    """What publishing a date older than the live lists does (`lists` | `version` | `promote`); not part of the
    output fingerprint: it decides where lists go, not what they hold."""
    backfill: str


@dataclass(frozen=True)
class LockConfig:
    """How long a run waits for another run's DATA_ROOT lock (`jobs.storage.lock`); 0 fails at once."""
    wait_seconds: float


@dataclass(frozen=True)
class ArmConfig:
    """One A/B arm: its `name` (the `variant` of its lists), its `share` of persons, and what it `serves`:
    `model` (the night's model), `previous` (the last published model), `popularity` (the person's segment list)
    or `override` (the night's model ranked with `overrides`, `rank.<key>=<value>` strings)."""
    name: str
    share: float
    serves: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExperimentConfig:
    id: str
    arms: tuple[ArmConfig, ...]


@dataclass(frozen=True)
class SparkConfig:
    master: str
    shuffle_partitions: int
    driver_memory: str


@dataclass(frozen=True)
class PrivacyConfig:
    """Retention and erasure (jobs/privacy/): what `recs purge` deletes; not part of the output fingerprint."""
    retention_days: int
    purge_raw: bool


@dataclass(frozen=True)
class AssessConfig:
    """`recs assess` (jobs/assess/): each threshold pair is [ready, usable]; not part of the output fingerprint."""
    recent_days: int
    catalog_every_days: int
    catalog_trend_days: int
    catalog_attributes: tuple[str, ...]
    min_purchases_per_user: int
    max_price_mode_share: float
    drop_ratio: float
    drop_baseline_days: int
    drop_min_history_days: int
    drop_min_daily_events: int
    min_platform_purchases: int
    history_days: tuple[float, ...]
    longest_gap_days: tuple[float, ...]
    active_day_share: tuple[float, ...]
    users_with_min_purchases: tuple[float, ...]
    logged_in_share: tuple[float, ...]
    devices_per_user: tuple[float, ...]
    anonymous_login_share: tuple[float, ...]
    untied_purchase_share: tuple[float, ...]
    attribute_coverage: tuple[float, ...]
    attribute_coverage_drop: tuple[float, ...]
    items_without_interactions_share: tuple[float, ...]
    views_per_purchase: tuple[float, ...]
    device_type_share: tuple[float, ...]
    platform_parity: tuple[float, ...]
    platform_drop_days: tuple[float, ...]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "tuple[float, ...]" and len(value) != 2:
                raise ConfigError(f"config key 'assess.{f.name}': expected [ready, usable], got {list(value)!r}")


@dataclass(frozen=True)
class AbtestConfig:
    """`recs ab-report` and the nightly `ab_report` task (jobs/abtest/): how an experiment is read back; not part of
    the output fingerprint (it reads what the lists did, it does not shape them). Dates are `YYYY-MM-DD` or empty."""
    start: str                      # first day exposures count; empty: the first day with an exposure
    planned_end: str                # the fixed-horizon readout's day; before it, only sequential intervals decide
    pre_period_days: int            # CUPED covariate: the person's revenue in these days before first exposure
    revenue_cap_percentile: float   # revenue per person capped at this pooled percentile (0..1; 1 = no cap)
    attribution_days: int           # a purchase of a clicked item within this many days is attributed to the click
    retention_days: int             # guardrail: back within this many days; only people exposed that long before
    alpha: float                    # two-sided level of every interval and test
    srm_p: float                    # sample-ratio mismatch flagged below this chi-square p-value
    imbalance_p: float              # pre-period imbalance flagged below this p-value
    sequential_tuning_n: float      # people (all arms) at which the sequential interval is tightest

    def __post_init__(self):
        for name in ("start", "planned_end"):
            value = getattr(self, name)
            if value:
                try:
                    dt.date.fromisoformat(value)
                except ValueError:
                    raise ConfigError(f"config key 'abtest.{name}': expected YYYY-MM-DD, got {value!r}") from None
        if not 0 < self.revenue_cap_percentile <= 1:
            raise ConfigError(f"config key 'abtest.revenue_cap_percentile': expected 0 < p <= 1, "
                              f"got {self.revenue_cap_percentile}")
        for name in ("alpha", "srm_p", "imbalance_p"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"config key 'abtest.{name}': expected 0 < p < 1, got {getattr(self, name)}")
        for name in ("pre_period_days", "attribution_days", "retention_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key 'abtest.{name}': expected at least 1, got {getattr(self, name)}")
        if self.sequential_tuning_n <= 0:
            raise ConfigError(f"config key 'abtest.sequential_tuning_n': expected > 0, got {self.sequential_tuning_n}")


@dataclass(frozen=True)
class ReportsConfig:
    """The night's page (jobs/reports/): not part of the output fingerprint."""
    trend_nights: int


@dataclass(frozen=True)
class RecsConfig:
    window_days: int
    top_n: int
    seed: int
    event_weights: EventWeights
    interactions: InteractionsConfig
    quality: QualityConfig
    activity: ActivityConfig
    identity: IdentityConfig
    als: AlsConfig
    candidates: CandidatesConfig
    content: ContentConfig
    coverage: CoverageConfig
    coldstart: ColdStartConfig
    filters: FiltersConfig
    rank: RankConfig
    gate: GateConfig
    segments: SegmentsConfig
    export: ExportConfig
    publish: PublishConfig
    lock: LockConfig
    experiment: ExperimentConfig
    spark: SparkConfig
    privacy: PrivacyConfig
    tuning: TuningConfig
    assess: AssessConfig
    reports: ReportsConfig
    abtest: AbtestConfig
    data_root: str = ""
    # dotted keys the user set (conf file or --set): the tune stage never changes them
    pinned: tuple[str, ...] = ()

    def settings(self) -> dict:
        """Every setting that shapes the output, as a plain dict: not where data lives nor how Spark runs.
        Stored with each model (so a later gate can say what changed) and hashed by `fingerprint`."""
        d = dataclasses.asdict(self)
        d.pop("data_root")
        d.pop("spark")
        d.pop("privacy")  # retention does not shape tonight's lists
        d.pop("assess")  # nor do the readiness assessment's thresholds
        d.pop("publish")  # nor does whether a backfill takes over the live pointer
        d.pop("lock")
        d.pop("reports")  # nor does the page that shows them
        d.pop("abtest")  # nor does how an experiment is read back
        d.pop("pinned")  # who set a value does not shape the lists; the value does
        d.pop("export")  # where the lists go does not shape them, and export.redis_url may carry a password
        return d

    def fingerprint(self) -> str:
        """Short hash of `settings()`."""
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True, default=list).encode()).hexdigest()[:10]

    def replace(self, **changes) -> "RecsConfig":
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings: dict) -> "RecsConfig":
        """This config with dotted-key `settings` (e.g. the night's tuned `{"als.alpha": 3.0}`) applied, each value
        checked against its key's type; a pinned key keeps the user's value."""
        cfg = self
        for dotted, value in sorted(settings.items()):
            if dotted in self.pinned:
                continue
            *parents, leaf = dotted.split(".")
            nodes = [cfg]
            for name in parents:
                if not hasattr(nodes[-1], name) or not dataclasses.is_dataclass(getattr(nodes[-1], name)):
                    raise ConfigError(f"unknown config key {dotted!r} in settings")
                nodes.append(getattr(nodes[-1], name))
            owner = nodes[-1]
            hints = typing.get_type_hints(type(owner))
            if leaf not in hints or dataclasses.is_dataclass(hints[leaf]):
                raise ConfigError(f"unknown config key {dotted!r} in settings")
            new = dataclasses.replace(owner, **{leaf: _coerce(value, hints[leaf], dotted)})
            for parent, name in zip(reversed(nodes[:-1]), reversed(parents)):
                new = dataclasses.replace(parent, **{name: new})
            cfg = new
        return cfg


_CHOICES = {("quality", "on_volume_anomaly"): ("fail", "warn")}
_CHOICES.update({("quality", k): ("fail", "warn") for k in (
    "on_schema_drift", "on_missing_partition", "on_quarantine_share", "on_unknown_items", "on_missing_identity",
    "on_catalog_coverage", "on_content_duplicates")})
_CHOICES[("quality", "naive_timestamps")] = ("utc", "reject")
_CHOICES[("tuning", "method")] = ("tpe", "random")
_CHOICES[("publish", "backfill")] = ("lists", "version", "promote")
_CHOICES[("candidates", "index", "method")] = ("auto", "exact", "ah", "tree")
_CHOICES[("als", "engine")] = ("implicit", "spark")
_CHOICES[("gate", "holdout")] = ("auto", "temporal", "per_person")


def _yaml_key(f: dataclasses.Field) -> str:
    return f.name.rstrip("_")


def _coerce(value, tp, key: str):
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (inner, _) = typing.get_args(tp)
        if dataclasses.is_dataclass(inner):
            return tuple(_build(inner, v, f"{key}[{i}].") for i, v in enumerate(value))
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _build(cls, raw: dict, prefix: str = ""):
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {prefix.rstrip('.')!r}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known keys here: {sorted(fields)}")
    kwargs = {}
    for key, f in fields.items():
        full = prefix + key
        if key not in raw:
            if f.default is not dataclasses.MISSING:
                continue
            raise ConfigError(f"config key {full!r} is missing")
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, raw[key], full + ".")
        else:
            value = _coerce(raw[key], tp, full)
            choices = _CHOICES.get(tuple(full.split(".")))
            if choices and value not in choices:
                raise ConfigError(f"config key {full!r}: {value!r} is not one of {choices}")
            kwargs[f.name] = value
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, text: str) -> None:
    keys = dotted.split(".")
    node = tree
    for i, k in enumerate(keys[:-1]):
        if k not in node or not isinstance(node[k], dict):
            raise ConfigError(f"unknown config key {'.'.join(keys[: i + 1])!r} in --set {dotted}={text}")
        node = node[k]
    if keys[-1] not in node:
        raise ConfigError(f"unknown config key {dotted!r} in --set {dotted}={text}; "
                          f"known keys here: {sorted(node)}")
    node[keys[-1]] = yaml.safe_load(text) if text != "" else ""


def _merge(base: dict, top: dict, prefix: str = "") -> dict:
    out = dict(base)
    for k, v in top.items():
        if k not in base:
            raise ConfigError(f"unknown config key {prefix + k!r}; known keys here: {sorted(base)}")
        out[k] = _merge(base[k], v, prefix + k + ".") if isinstance(v, dict) and isinstance(base[k], dict) else v
    return out


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in tree.items():
        out |= _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def load_config(conf_file: str | Path | None = None, overrides: typing.Iterable[str] = (),
                data_root: str | None = None) -> RecsConfig:
    """Defaults, then `conf_file`, then `key=value` overrides; validated into a `RecsConfig`.

    Every key set in `conf_file` or `overrides` is recorded in `RecsConfig.pinned`: a value the user chose,
    which self-tuning leaves alone."""
    tree = yaml.safe_load(DEFAULT_CONF.read_text())
    pinned: set[str] = set()
    if conf_file:
        user = yaml.safe_load(Path(conf_file).read_text()) or {}
        tree = _merge(tree, user)
        pinned |= _leaf_keys(user)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        _set_dotted(tree, k.strip(), v.strip())
        pinned.add(k.strip())
    if data_root is not None:
        tree["data_root"] = str(data_root)
    tree["pinned"] = sorted(pinned)
    cfg = _build(RecsConfig, tree)
    from jobs.segments import check_dimensions
    from jobs.experiments import check_experiment

    check_experiment(cfg.experiment)
    try:
        check_dimensions(cfg.segments.dimensions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg
