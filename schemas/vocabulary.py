"""The contract's small vocabularies and rules on values, defined once for every package that needs them.

Kept free of Spark and pandas imports: each rule is a plain value or takes the column it works on, so the
quality checks, the stages, the evaluation and the shop generator all share one definition.
"""
from __future__ import annotations

from schemas import load

# Event types that carry an `item_id` (the contract requires it for these).
ITEM_EVENT_TYPES: tuple[str, ...] = ("product_view", "add_to_cart", "remove_from_cart", "purchase", "return",
                                     "rec_impression", "rec_click")

# `category_path` levels are joined by this separator, most general first; the leaf is the last level.
CATEGORY_SEPARATOR = " > "


def leaf_category(category_path: str | None) -> str | None:
    """`Women > Shoes > Sneakers` -> `Sneakers`; None stays None."""
    if category_path is None:
        return None
    return category_path.split(CATEGORY_SEPARATOR)[-1].strip()


def leaf_category_column(category_path):
    """The same rule as a Spark column expression."""
    from pyspark.sql import functions as F

    return F.trim(F.element_at(F.split(category_path, CATEGORY_SEPARATOR), -1))


def leaf_category_series(category_path):
    """The same rule on a pandas Series of strings (nulls stay null)."""
    return category_path.str.split(CATEGORY_SEPARATOR).str[-1].str.strip()

# The lookup context's vocabularies (`recs serve` answers 400 for anything else).
DEVICE_TYPES: tuple[str, ...] = load("events").field("device_type").enum

# ISO 3166-1 alpha-2: the officially assigned codes (the tz database's iso3166.tab), upper case as the contract writes them.
COUNTRY_CODES: frozenset[str] = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC
CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH
KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC
SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())
