"""The storefront simulator (`recs simulate-storefront`): simulated days of a generated shop whose home page shows
the lists the pipeline PUBLISHED, read through the service's own lookup, so a model change can be measured end
to end and checked against the truth.

`simulator` runs the days, `population` rebuilds the shop's people and items (and who arrives), `behaviour` is
how shoppers react to a list (true utility, position bias, quality effect), `truth` documents and reads what is
kept under `truth/storefront/`.
"""
from jobs.storefront.behaviour import Behaviour
from jobs.storefront.population import Arrivals
from jobs.storefront.simulator import Faults, simulate_storefront

__all__ = ["Arrivals", "Behaviour", "Faults", "simulate_storefront"]
