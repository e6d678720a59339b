"""A/B arms: which arm a person is in, the same rule in Python and as a Spark column.

A person's arm comes from a salted hash of the experiment id and their person_id, mapped to [0, 1) and cut at the
arms' cumulative shares: the same person lands in the same arm every night for as long as the experiment id and
the shares stay, and a new experiment id reshuffles everyone. SHA-256 (its first 32 bits) because Spark (`sha2`)
and Python (`hashlib`) compute it identically, so a service or an analysis can recompute an arm without Spark.
People the pipeline does not know (segment lists) are outside the experiment: their lists carry the first arm's
name, which by convention is the control.
"""
from __future__ import annotations

import hashlib

from jobs.config import ArmConfig, ConfigError, ExperimentConfig

SERVES = ("model", "previous", "popularity", "override")
OVERRIDABLE = ("rank.",)  # an override arm re-ranks the night's candidates; other settings would need another model
_SCALE = float(2 ** 32)


def check_experiment(exp: ExperimentConfig) -> None:
    """Names unique and non-empty, shares positive and adding up to 1, `serves` known, overrides only `rank.*`."""
    if not exp.arms:
        raise ConfigError("config key 'experiment.arms' needs at least one arm")
    names = [a.name for a in exp.arms]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"config key 'experiment.arms': names must be non-empty and unique, got {names}")
    for i, arm in enumerate(exp.arms):
        where = f"config key 'experiment.arms[{i}]' ({arm.name})"
        if arm.serves not in SERVES:
            raise ConfigError(f"{where}: serves {arm.serves!r} is not one of {SERVES}")
        if arm.share <= 0:
            raise ConfigError(f"{where}: share must be positive, got {arm.share}")
        if arm.overrides and arm.serves != "override":
            raise ConfigError(f"{where}: overrides are only read when serves is 'override'")
        for item in arm.overrides:
            key = item.split("=", 1)[0].strip()
            if "=" not in item or not key.startswith(OVERRIDABLE):
                raise ConfigError(f"{where}: override {item!r} must be `rank.<key>=<value>`")
    total = sum(a.share for a in exp.arms)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"config key 'experiment.arms': shares add up to {total:g}, not 1")
    if len(exp.arms) > 1 and not exp.id:
        raise ConfigError("config key 'experiment.id' is empty but there are several arms: name the experiment")


def _bounds(exp: ExperimentConfig) -> list[tuple[float, ArmConfig]]:
    """(upper bound of the arm's slice of [0, 1), arm); the last bound is 1 whatever the rounding."""
    out, upper = [], 0.0
    for arm in exp.arms:
        upper += arm.share
        out.append((upper, arm))
    out[-1] = (1.0, out[-1][1])
    return out


def position(experiment_id: str, person_id: str) -> float:
    """Where the person falls in [0, 1) for this experiment."""
    digest = hashlib.sha256(f"{experiment_id}:{person_id}".encode()).hexdigest()
    return int(digest[:8], 16) / _SCALE


def arm_of(exp: ExperimentConfig, person_id: str) -> str:
    if len(exp.arms) == 1:
        return exp.arms[0].name
    at = position(exp.id, person_id)
    return next(arm.name for upper, arm in _bounds(exp) if at < upper)


def arm_column(exp: ExperimentConfig, person_id):
    """`arm_of` as a Spark column over a person_id column."""
    from pyspark.sql import functions as F

    if len(exp.arms) == 1:
        return F.lit(exp.arms[0].name)
    digest = F.sha2(F.concat(F.lit(f"{exp.id}:"), person_id), 256)
    at = F.conv(F.substring(digest, 1, 8), 16, 10).cast("double") / F.lit(_SCALE)
    bounds = _bounds(exp)
    arm = F.lit(bounds[-1][1].name)
    for upper, a in reversed(bounds[:-1]):
        arm = F.when(at < F.lit(upper), F.lit(a.name)).otherwise(arm)
    return arm


def outside_arm(exp: ExperimentConfig) -> str:
    """The variant of lists served to people outside the experiment (segment lists): the first arm's name."""
    return exp.arms[0].name


def serves_previous(exp: ExperimentConfig) -> bool:
    """Whether an arm serves the last published model (retrieve then also searches with that model)."""
    return any(a.serves == "previous" for a in exp.arms)


def serves_popularity(exp: ExperimentConfig) -> bool:
    """Whether an arm serves popular items alone (rank then keeps segment lists as long as on a fallback night)."""
    return any(a.serves == "popularity" for a in exp.arms)
