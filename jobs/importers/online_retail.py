"""UCI Online Retail (541,909 order lines, 2010-12-01..2011-12-09) as contract raw inputs.

Each product order line becomes one event: a normal invoice line a `purchase`, a cancellation line (invoice
`C...`, negative quantity) a `return` with the positive quantity. Lines that are not product sales are dropped and
counted by reason. A daily catalog snapshot is derived from the lines themselves (the data has no catalog).

The source's quirks (see `shared/data/online_retail/PROVENANCE.md`): missing descriptions are the string "nan";
`CustomerID` is a float with NaN; `InvoiceDate` is nanosecond-precision and has no time zone (taken as UTC); some
stock codes are postage, fees or adjustments; 5,268 rows are exact duplicates.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobs.storage.layout import Layout
from jobs.importers import (
    availability,
    check_no_foreign_partitions,
    daily_catalogs,
    day_range,
    split_by_day,
    utc_days,
    write_daily,
)

log = logging.getLogger(__name__)

SOURCE_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
                  "Country")

# A product is 5 digits plus an optional variant suffix (85123A, 15056BL; some rows are lower-case). Everything else
# in the data is postage (POST, DOT, C2), manual lines (M), discounts (D), fees (BANK CHARGES, AMAZONFEE), charity
# (CRUK), samples (S), bad-debt adjustments (B), gift vouchers (gift_0001_*) or sample packs (DCGS*).
PRODUCT_CODE = r"^\d{5}[A-Za-z]{0,2}$"

# Dataset country names -> ISO 3166-1 alpha-2. "Channel Islands" spans JE and GG, "European Community" and
# "Unspecified" name no country: those stay null.
COUNTRY_CODES: Mapping[str, str] = {
    "Australia": "AU", "Austria": "AT", "Bahrain": "BH", "Belgium": "BE", "Brazil": "BR", "Canada": "CA",
    "Cyprus": "CY", "Czech Republic": "CZ", "Denmark": "DK", "EIRE": "IE", "Finland": "FI", "France": "FR",
    "Germany": "DE", "Greece": "GR", "Hong Kong": "HK", "Iceland": "IS", "Israel": "IL", "Italy": "IT", "Japan": "JP",
    "Lebanon": "LB", "Lithuania": "LT", "Malta": "MT", "Netherlands": "NL", "Norway": "NO", "Poland": "PL",
    "Portugal": "PT", "RSA": "ZA", "Saudi Arabia": "SA", "Singapore": "SG", "Spain": "ES", "Sweden": "SE",
    "Switzerland": "CH", "USA": "US", "United Arab Emirates": "AE", "United Kingdom": "GB",
}

# Drop reasons, in the order they are tested: a line is counted under the first that applies.
DROP_REASONS = ("bad_invoice", "non_product_code", "missing_description", "non_positive_price",
                "bad_quantity", "duplicate_row")

CATEGORY_ROOT = "Home"
OTHER_CATEGORY = f"{CATEGORY_ROOT} > Other"

# Words that end many descriptions but name a colour, size, pattern or theme, not what the thing is
# ("LUNCH BAG RED RETROSPOT" is a bag). Skipped when looking for the product-type keyword from the end.
_MODIFIERS = frozenset("""
A AN AND OF THE IN ON WITH FOR TO BY SET PACK ASSORTED DESIGN DESIGNS COLOUR COLOURS COL COLOURED STYLE NO
RED PINK BLUE GREEN WHITE BLACK CREAM IVORY GOLD SILVER YELLOW ORANGE PURPLE BROWN GREY NATURAL CLEAR LILAC TURQUOISE
AQUA BEIGE MULTI MULTICOLOUR PASTEL BRIGHT DARK LIGHT ANTIQUE RETRO VINTAGE FRENCH ENGLISH LARGE SMALL MEDIUM MINI
JUMBO GIANT BIG TINY TALL LONG SQUARE ROUND RETROSPOT POLKADOT SPOTTY SPOT SPOTS STRIPE STRIPES STRIPY PAISLEY
FLORAL SPACEBOY DOLLY GIRL BOY LONDON CHRISTMAS XMAS UNION JACK WOODLAND METAL ZINC WOOD WOODEN GLASS FLOCK ENAMEL
CERAMIC FELT FELTCRAFT PORCELAIN LACE LOVE SWEET HOME HAPPY NEW BIRTHDAY EASTER ENGLAND FRENCH PARIS BAROQUE SKULL
SKULLS REGENCY EDWARDIAN VICTORIAN PAINTED BABUSHKA FONT GARDEN APPLE ROSE LEAF BUTTERFLY SCANDINAVIAN
HEART HEARTS STAR STARS HANGING BIRD BIRDS COTTAGE CHOCOLATE PARTY KITCHEN FABRIC PAPER SCENTED LAVENDER CRYSTAL WICKER
""".split())

# Spellings of one product type in the data.
_SYNONYMS = {"TEALIGHT": "T-LIGHT", "TLIGHT": "T-LIGHT", "DOILEY": "DOILY"}

_IRREGULAR_SINGULAR = {"EARRINGS": "EARRING", "GLASSES": "GLASSES", "SCISSORS": "SCISSORS", "DOILIES": "DOILY"}


@dataclass(frozen=True)
class Conversion:
    """What `convert_order_lines` returns.

    Attributes
    ----------
    events : pandas.DataFrame
        Contract event columns (absent optional columns left out), `event_time` tz-aware UTC,
        ordered by `event_time`, `event_id`.
    items : pandas.DataFrame
        One row per item in `events`: catalog columns `item_id`, `title`, `category_path`, `price`, `currency`,
        `created_at` (first sale, or first return for the few items returned before any sale in the data).
    dropped : dict
        Lines dropped per reason in `DROP_REASONS` (every reason present, zeros included).
    unmapped_countries : dict
        Events whose country name has no ISO code, per name (their `country` is null).
    """
    events: pd.DataFrame
    items: pd.DataFrame
    dropped: dict[str, int]
    unmapped_countries: dict[str, int]


def read_order_lines(source: str) -> pd.DataFrame:
    """Reads the Online Retail Parquet file, checking the columns it needs.

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: a required column is missing (names the file and the columns).
    """
    from jobs.storage import io

    if not io.exists(source):
        raise FileNotFoundError(f"Online Retail source not found: {source}")
    lines = pd.read_parquet(source)
    missing = [c for c in SOURCE_COLUMNS if c not in lines.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(lines.columns)}")
    return lines


def convert_order_lines(lines: pd.DataFrame, *, product_code: str = PRODUCT_CODE,
                        countries: Mapping[str, str] = COUNTRY_CODES,
                        min_items_per_category: int = 10) -> Conversion:
    """Order lines -> contract events plus one catalog row per item. Pure: no I/O.

    Parameters
    ----------
    lines : pandas.DataFrame
        The source columns `SOURCE_COLUMNS`, as read from the file.
    product_code : str
        Regular expression a product StockCode matches; other codes are dropped as `non_product_code`.
    countries : Mapping
        Dataset country name -> ISO alpha-2; names not in it give a null country.
    min_items_per_category : int
        A derived category with fewer items than this is folded into `Home > Other`.

    Returns
    -------
    Conversion
        events, items, per-reason drop counts (summing with the events to `len(lines)`), unmapped countries.
    """
    missing = [c for c in SOURCE_COLUMNS if c not in lines.columns]
    if missing:
        raise ValueError(f"order lines: missing column(s) {missing}")
    src = lines.loc[:, list(SOURCE_COLUMNS)].reset_index(drop=True)

    invoice = src["InvoiceNo"].astype("string").str.strip()
    code = src["StockCode"].astype("string").str.strip()
    description = _clean_descriptions(src["Description"])
    event_time = pd.to_datetime(src["InvoiceDate"], errors="coerce")
    event_time = (event_time.dt.tz_localize("UTC") if event_time.dt.tz is None
                  else event_time.dt.tz_convert("UTC")).astype("datetime64[us, UTC]")
    quantity = pd.to_numeric(src["Quantity"], errors="coerce")
    price = pd.to_numeric(src["UnitPrice"], errors="coerce")
    is_return = invoice.str.startswith("C").fillna(False)

    reasons = pd.Series(pd.NA, index=src.index, dtype="string")

    def flag(reason: str, bad: pd.Series) -> None:
        reasons.loc[reasons.isna() & bad.fillna(True).astype(bool)] = reason

    flag("bad_invoice", invoice.isna() | (invoice == "") | event_time.isna()
         | ~invoice.str.fullmatch(r"C?\d+").fillna(False))
    flag("non_product_code", ~code.str.fullmatch(product_code).fillna(False))
    flag("missing_description", description.isna())
    flag("non_positive_price", ~(price > 0))
    # A sale has a positive quantity, a cancellation a negative one; zero or the wrong sign (stock write-offs
    # booked as negative sales, all at price 0 in this data) is no sale.
    flag("bad_quantity", quantity.isna() | (quantity == 0) | (quantity != quantity.round())
         | ((quantity < 0) != is_return))
    flag("duplicate_row", src.duplicated(keep="first"))
    dropped = {r: int(n) for r, n in reasons.value_counts().items()}
    dropped = {r: dropped.get(r, 0) for r in DROP_REASONS}

    keep = reasons.isna().to_numpy()
    src, invoice, code, description = src[keep], invoice[keep], code[keep], description[keep]
    event_time, quantity, price, is_return = event_time[keep], quantity[keep], price[keep], is_return[keep]

    order_id = invoice.str.removeprefix("C")
    customer = pd.to_numeric(src["CustomerID"], errors="coerce")
    has_customer = customer.notna()
    customer_text = customer.round().astype("Int64").astype("string")
    country_name = src["Country"].astype("string").str.strip()
    country = country_name.map(dict(countries)).astype("string")
    unmapped = country_name[country.isna()].fillna("<missing>").value_counts()

    events = pd.DataFrame({
        "event_id": _event_ids(src),
        "event_time": event_time,
        "event_type": np.where(is_return, "return", "purchase"),
        # one stable cookie per customer; a guest is a new shopper on every invoice
        "anonymous_id": ("ca" + customer_text).where(has_customer, "g" + order_id),
        "user_id": ("c" + customer_text).where(has_customer),
        "country": country,
        "item_id": code.str.upper(),
        "quantity": quantity.abs().astype("int64"),
        "price": price.astype("float64"),
        "order_id": order_id,
    })
    events = events.astype({c: "string" for c in ("event_type", "anonymous_id", "user_id", "item_id", "order_id")})
    if events["event_id"].duplicated().any():  # cannot happen once exact duplicates are gone; guard the contract
        raise ValueError("order lines: two distinct lines hashed to one event_id")

    items = _catalog_items(events, description, min_items_per_category=min_items_per_category)
    events = events.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    return Conversion(events, items, dropped, {str(k): int(v) for k, v in unmapped.items()})


def _clean_descriptions(raw: pd.Series) -> pd.Series:
    """Trimmed, single-spaced descriptions; null for blanks, "nan" and placeholders such as "?" or "??"."""
    codes, uniques = pd.factorize(raw.astype("string"))  # ~4k distinct texts: clean those, not 0.5M rows
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=raw.index, dtype="string")
    clean = pd.Series(uniques, dtype="string").str.strip().str.replace(r"\s+", " ", regex=True)
    # "nan" is what the parquet conversion wrote for a blank; "?", "??" are placeholders typed by staff
    clean = clean.mask((clean == "nan") | ~clean.str.contains(r"[A-Za-z0-9]", regex=True).fillna(False))
    out = pd.Series(clean.to_numpy()[np.maximum(codes, 0)], index=raw.index, dtype="string")
    return out.mask(codes < 0)


def _event_ids(src: pd.DataFrame) -> list[str]:
    """sha1 of the source line's content: a re-import of the same file gives the same ids.

    Exact duplicate lines are dropped before this, so the content alone is unique.
    """
    when = pd.Series(np.datetime_as_string(pd.to_datetime(src["InvoiceDate"]).to_numpy().astype("datetime64[s]")),
                     index=src.index, dtype="string")
    customer = pd.to_numeric(src["CustomerID"], errors="coerce").round().astype("Int64").astype("string").fillna("")
    price = pd.Series([repr(float(p)) for p in src["UnitPrice"].to_numpy()], index=src.index, dtype="string")
    sep = "\x1f"
    content = (src["InvoiceNo"].astype("string").fillna("") + sep + src["StockCode"].astype("string").fillna("")
               + sep + src["Description"].astype("string").fillna("") + sep + src["Quantity"].astype("string")
               + sep + when + sep + price + sep + customer + sep + src["Country"].astype("string").fillna(""))
    return ["or-" + hashlib.sha1(c.encode("utf-8")).hexdigest()[:24] for c in content.tolist()]


def _singular(word: str) -> str:
    if word in _IRREGULAR_SINGULAR:
        return _IRREGULAR_SINGULAR[word]
    if len(word) > 4 and word.endswith("IES"):
        return word[:-3] + "Y"
    if len(word) > 4 and word.endswith(("XES", "CHES", "SHES", "SSES")):
        return word[:-2]
    if len(word) > 3 and word.endswith("S") and not word.endswith(("SS", "US", "IS")):
        return word[:-1]
    return word


def _words(description: str | None) -> list[str]:
    """Upper-case singular words of a description, last word first; numbers and sizes left out."""
    if not description:
        return []
    words = (w.strip("-") for w in reversed(re.split(r"[^A-Za-z\-]+", description.upper())))
    words = (w if w in _MODIFIERS else _SYNONYMS.get(_singular(w), _singular(w)) for w in words if len(w) >= 3)
    return list(words)


def category_keyword(description: str | None) -> str | None:
    """The product-type word of a description: the last word that is not a colour, size, pattern or theme.

    >>> category_keyword("LUNCH BAG RED RETROSPOT")
    'BAG'
    >>> category_keyword("SET 7 BABUSHKA NESTING BOXES")
    'BOX'
    """
    return next((w for w in _words(description) if w not in _MODIFIERS), None)


def category_paths(titles: pd.Series, *, min_items: int) -> pd.Series:
    """Two-level paths `Home > <Keyword>` derived from item titles.

    The keywords are the last non-modifier words that end at least `min_items` titles ("BAG", "MUG", ...). Each
    title then takes the last of its words that is such a keyword, so "VINTAGE KEEPSAKE BOX TRAVELOGUE" is a Box
    although it ends in a theme name. A title with none goes to `Home > Other`.
    """
    counts = titles.map(category_keyword).value_counts()
    vocabulary = set(counts[counts >= min_items].index)

    def path(title) -> str:
        word = next((w for w in _words(title) if w in vocabulary), None)
        return f"{CATEGORY_ROOT} > {word.replace('-', ' ').title()}" if word else OTHER_CATEGORY

    return titles.map(path).astype("string")


def _catalog_items(events: pd.DataFrame, description: pd.Series, *, min_items_per_category: int) -> pd.DataFrame:
    lines = pd.DataFrame({"item_id": events["item_id"].to_numpy(), "title": description.to_numpy(),
                          "price": events["price"].to_numpy(), "event_time": events["event_time"].to_numpy()})
    # most common description; ties go to the alphabetically first, so the choice is stable
    counts = lines.groupby(["item_id", "title"]).size().rename("n").reset_index()
    title = (counts.sort_values(["item_id", "n", "title"], ascending=[True, False, True])
             .drop_duplicates("item_id").set_index("item_id")["title"])
    grouped = lines.groupby("item_id")
    items = pd.DataFrame({"title": title, "price": grouped["price"].median(),
                          "created_at": grouped["event_time"].min()}).reset_index()
    items["category_path"] = category_paths(items["title"], min_items=min_items_per_category)
    items["currency"] = "GBP"
    return items


def catalog_snapshots(items: pd.DataFrame, events: pd.DataFrame, *, first_day: str, last_day: str,
                      available_days: int = 90):
    """Yields `(day, catalog table)` for every day from `first_day` to `last_day`.

    An item is listed from the day of its `created_at`; it is available on a day when it was purchased in the
    `available_days` days ending on that day.
    """
    days = day_range(first_day, last_day)
    origin = np.datetime64(first_day, "D")
    item_pos = pd.Index(items["item_id"])
    listed_from = (items["created_at"].dt.tz_convert(None).to_numpy().astype("datetime64[D]") - origin).astype(int)
    purchases = events[events["event_type"] == "purchase"]
    sale_day = (purchases["event_time"].dt.tz_convert(None).to_numpy().astype("datetime64[D]") - origin).astype(int)
    available = availability(item_pos.get_indexer(purchases["item_id"]), sale_day, n_items=len(items),
                             n_days=len(days), window_days=available_days)
    return daily_catalogs(items, days=days, listed_from=listed_from, available=available)


def import_online_retail(source: str, data_root: str, *, available_days: int = 90,
                         min_items_per_category: int = 10) -> dict:
    """Converts the Online Retail file into contract raw events and daily catalogs under `data_root`.

    Parameters
    ----------
    source : str
        The Parquet file (`shared/data/online_retail/online_retail.parquet`).
    data_root : str
        DATA_ROOT; must not hold raw partitions of another dataset.
    available_days : int
        An item is `is_available` on a day when it sold in this many days ending on that day.
    min_items_per_category : int
        Derived categories with fewer items are folded into `Home > Other`.

    Returns
    -------
    dict
        `rows_read`, `rows_written` (events), `events_by_type`, `rows_dropped` (per reason), `days` (catalog days),
        `event_days`, `users`, `anonymous_ids`, `items`, `categories`, `first_day`, `last_day`, `catalog_rows`,
        `unmapped_countries`, `seconds`.
    """
    started = time.monotonic()
    lines = read_order_lines(source)
    conv = convert_order_lines(lines, min_items_per_category=min_items_per_category)
    if conv.events.empty:
        raise ValueError(f"{source}: no order line survived the import; dropped per reason: {conv.dropped}")
    event_days = sorted(set(utc_days(conv.events["event_time"]).tolist()))
    first_day, last_day = event_days[0], event_days[-1]
    days = day_range(first_day, last_day)

    layout = Layout(data_root)
    check_no_foreign_partitions(layout, {"events": event_days, "catalog": days, "profiles": []})
    write_daily(split_by_day(conv.events), layout, "events")
    catalog_rows = 0

    def counted(snapshots):
        nonlocal catalog_rows
        for ds, table in snapshots:
            catalog_rows += table.num_rows
            yield ds, table

    write_daily(counted(catalog_snapshots(conv.items, conv.events, first_day=first_day, last_day=last_day,
                                          available_days=available_days)), layout, "catalog")
    summary = {
        "dataset": "online_retail",
        "source": str(source),
        "data_root": str(data_root),
        "rows_read": len(lines),
        "rows_written": len(conv.events),
        "events_by_type": {k: int(v) for k, v in conv.events["event_type"].value_counts().sort_index().items()},
        "rows_dropped": conv.dropped,
        "days": len(days),
        "event_days": len(event_days),
        "users": int(conv.events["user_id"].nunique()),
        "anonymous_ids": int(conv.events["anonymous_id"].nunique()),
        "items": len(conv.items),
        "categories": int(conv.items["category_path"].nunique()),
        "first_day": first_day,
        "last_day": last_day,
        "catalog_rows": catalog_rows,
        "unmapped_countries": conv.unmapped_countries,
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("imported Online Retail: %s", summary)
    return summary
