"""The synthetic shop: raw inputs in the contract layout plus the ground truth the pipeline is scored against.

`generate_shop` is the entry point (`recs generate-shop`, tests, benchmarks, the demo); `DEFECT_KINDS` and
`TRUTH_SCHEMAS` say what `truth/` holds.

How the shop behaves (each choice gives a later stage something to find; the figures come from `knobs`):

* Catalog: a 3-level category tree, brands, lognormal prices per leaf, Zipf(1.0) popularity inside each leaf,
  ~15% of items listed during the period, items going out of stock and coming back, a few that never sell.
* People: tastes are a Dirichlet mix over 1-3 top-level categories and a few of their leaves, two favourite
  brands and a price band. A session browses one leaf (15% of them one drawn from global popularity) and
  picks items by popularity x brand fit x price fit, so matrix factorization can beat popularity.
* Identity: guests have one device and never log in; registered people browse anonymously on each of their
  1-3 devices until a login (a `login` event with `email_hash`), after which that device carries their
  `user_id`. Some people have two accounts with one email, some devices are shared by a household, and a
  few kiosks are used by hundreds of accounts.
* Defects (`defect_rate`): extra bad rows drawn from a separate random stream, so the good rows are the same
  whatever the rate: `truth/defects` lists each one.
"""
from jobs.shop.generator import DEFECT_KINDS, TRUTH_SCHEMAS, generate_shop

__all__ = ["DEFECT_KINDS", "TRUTH_SCHEMAS", "generate_shop"]
