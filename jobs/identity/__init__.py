"""Identity stitching: the cookies, app installs and accounts of one person become one `person_id`.

- `jobs.identity.graph`: the identity graph, its guards and stable person ids; `stitch` (one night),
  `identity_map`, `person_id_for`;
- `jobs.identity.components`: connected components on Spark DataFrames (large-star / small-star);
- `jobs.identity.attribution`: `attribute_events`, which person each event goes to;
- `jobs.identity.state`: the state carried from night to night (`IdentityState`, `read_state`, `write_state`,
  `load_state_nodes`) and the validated events stitching reads;
- `jobs.identity.scoring`: `evaluate_stitching`, pairwise precision/recall against ground truth (pandas).

The stage that runs it nightly is `jobs.stages.stitch`. The names below are re-exported lazily, so importing
this package imports neither Spark nor pandas.
"""
from __future__ import annotations

_EXPORTS = {
    "attribute_events": "jobs.identity.attribution",
    "connected_components": "jobs.identity.components",
    "IdentityState": "jobs.identity.state",
    "StitchResult": "jobs.identity.graph",
    "identity_map": "jobs.identity.graph",
    "person_id_for": "jobs.identity.graph",
    "stitch": "jobs.identity.graph",
    "load_state_nodes": "jobs.identity.state",
    "read_state": "jobs.identity.state",
    "write_state": "jobs.identity.state",
    "evaluate_stitching": "jobs.identity.scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
