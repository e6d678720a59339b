"""The synthetic shop: raw inputs in the contract layout plus the ground truth the pipeline is scored against.

`generate_shop` is the entry point (`recs generate-shop`, tests, benchmarks, the demo); `DEFECT_KINDS` and
`TRUTH_SCHEMAS` say what `truth/` holds.
"""
from jobs.shop.generator import DEFECT_KINDS, TRUTH_SCHEMAS, generate_shop

__all__ = ["DEFECT_KINDS", "TRUTH_SCHEMAS", "generate_shop"]
