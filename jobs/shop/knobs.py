"""How the shop behaves, as shares and probabilities: in one place because they are tuned together (the
figures in the `jobs.shop` docstring and the events per user and day follow from them)."""
from __future__ import annotations

import numpy as np

COUNTRIES = {"GB": 0.40, "DE": 0.15, "FR": 0.12, "US": 0.10, "NL": 0.08, "ES": 0.08, "IT": 0.07}
# Share of devices by type; registered people's busiest device is as likely to be any type, so traffic
# shares follow these closely (ios ~25%).
DEVICE_TYPE_SHARE = {"desktop": 0.35, "mobile_web": 0.25, "ios": 0.25, "android": 0.15}
ENTRY_SOURCES = {"direct": 0.35, "search_engine": 0.25, "ads": 0.18, "social": 0.12, "email": 0.10}
AGE_BANDS = {"18-24": 0.18, "25-34": 0.30, "35-44": 0.24, "45-54": 0.15, "55-64": 0.09, "65+": 0.04}

REGISTERED_SHARE = 0.70
ACTIVE_AT_START_SHARE = 0.70
PRE_EXISTING_ITEM_SHARE = 0.85
NEVER_SELLS_SHARE = 0.02
TWO_ACCOUNTS_SHARE = 0.02
HOUSEHOLD_DEVICE_SHARE = 0.03
PROFILE_SHARE = 0.40
DEVICES_PER_REGISTERED = (0.55, 0.35, 0.10)  # 1, 2, 3 devices
EXPLORE_SHARE = 0.15
SESSIONS_PER_ACTIVE_DAY = 0.34  # tuned so that events / (users * days) comes out ~1.1
ACTIVITY_SIGMA = 1.0
LOGIN_DELAY_P = 0.25  # geometric: days from a newcomer's arrival to their login on a device (mean 3)
REAUTH_P = 0.03  # a logged-in session that logs in again anyway
LOGIN_MID_SESSION_P = 0.4  # the login comes after 1-2 anonymous product views
SEARCH_P, CATEGORY_VIEW_P, REC_BLOCK_P = 0.18, 0.20, 0.08
REC_SLOTS = 4
REC_CLICK_P = {"control": 0.12, "treatment": 0.20}
VIEWS_GEOMETRIC_P = 0.4  # product views per session: geometric, mean 2.5
CART_P, CONVERT_P = 0.09, 0.45
REMOVE_P_CONVERTED, REMOVE_P_ABANDONED = 0.10, 0.30
RETURN_P, RETURN_DAYS = 0.06, (2, 21)
OUT_OF_STOCK_P, RESTOCK_P, PRICE_CHANGE_P = 0.01, 0.25, 0.01
UNAVAILABLE_VIEW_FACTOR = 0.15  # out-of-stock pages still get some views, never carts
BRAND_FIT, PRICE_BAND_SIGMA, PRICE_FIT_FLOOR = 4.0, 0.4, 0.15
KIOSK_ACCOUNTS = (25, 300)  # at least / at most accounts per kiosk; ~10% of users in between

# Sessions start more often at lunchtime and in the evening (UTC; most shoppers are in Europe).
HOURLY_TRAFFIC = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4, 4, 4.5, 5.5, 6.5,
                           7, 6, 4, 2], dtype=float)
