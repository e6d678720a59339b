import numpy as np
import pytest

from jobs.config import DiversityConfig
from jobs.ranking.diversity import intra_list_diversity, mmr_order


def _greedy(relevance, categories, strength):
    """The MMR greedy loop written out: the next item maximises (1 - s) x odds - s x (its category's items above)."""
    odds = np.exp(relevance - relevance.max())
    seen, taken, order = {}, np.zeros(len(relevance), dtype=bool), []
    for _ in range(len(relevance)):
        value = (1 - strength) * odds - strength * np.array([seen.get(c, 0) for c in categories], dtype=float)
        value[taken] = -np.inf
        pick = int(np.argmax(value))
        order.append(pick)
        taken[pick] = True
        seen[categories[pick]] = seen.get(categories[pick], 0) + 1
    return order


def test_a_dominant_category_is_broken_up_and_every_item_kept():
    relevance = np.array([3.0, 2.9, 2.8, 2.7, 2.0, 1.8])      # ranker scores: four shoes well ahead
    categories = np.array(["shoes", "shoes", "shoes", "shoes", "bags", "hats"])
    plain = mmr_order(relevance, categories, DiversityConfig(strength=0.0, depth=4))
    diverse = mmr_order(relevance, categories, DiversityConfig(strength=0.5, depth=4))
    assert list(plain) == [0, 1, 2, 3, 4, 5]
    assert sorted(diverse) == list(range(6))
    assert set(diverse[:4]) == {0, 1, 4, 5}                   # two shoes give way to the bag and the hat
    before = intra_list_diversity([categories[plain[:4]]])
    after = intra_list_diversity([categories[diverse[:4]]])
    assert before == 0.0 and after > 0.8


def test_a_page_shows_the_chosen_items_in_relevance_order():
    relevance = np.array([3.0, 2.9, 2.8, 2.0])
    categories = np.array(["shoes", "shoes", "shoes", "bags"])
    config = DiversityConfig(strength=0.5, depth=2)
    order = mmr_order(relevance, categories, config)
    assert list(order[:2]) == [0, 3]                            # the best shoe and the bag, the more relevant first
    assert list(order[2:]) == [1, 2]
    one_page = mmr_order(relevance, categories, DiversityConfig(strength=0.5, depth=4))
    assert list(one_page) == [0, 1, 2, 3]                       # a page as long as the list: relevance order


def test_pages_of_one_are_the_greedy_mmr_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        relevance = rng.normal(size=30)
        categories = rng.choice(["a", "b", "c", "d"], size=30, p=[0.55, 0.25, 0.15, 0.05])
        for strength in (0.03, 0.2, 0.6):
            got = mmr_order(relevance, categories, DiversityConfig(strength=strength, depth=1))
            assert list(got) == _greedy(relevance, categories, strength)


def test_a_weak_strength_keeps_a_clearly_better_item_of_the_same_category():
    relevance = np.array([3.0, 2.9, -1.0])                     # the bag is far behind in score
    categories = np.array(["shoes", "shoes", "bags"])
    assert list(mmr_order(relevance, categories, DiversityConfig(strength=0.03, depth=1))) == [0, 1, 2]


def test_a_confident_gap_is_kept_where_a_flat_one_is_broken_up():
    """The same ranks, different score gaps: the odds make the flat top list cheap to diversify, the steep one not."""
    categories = np.array(["shoes", "shoes", "bags"])
    flat = mmr_order(np.array([1.00, 0.98, 0.95]), categories, DiversityConfig(strength=0.05, depth=1))
    steep = mmr_order(np.array([3.0, 2.0, 0.0]), categories, DiversityConfig(strength=0.05, depth=1))
    assert list(flat) == [0, 2, 1] and list(steep) == [0, 1, 2]


def test_intra_list_diversity_counts_pairs_of_differing_categories():
    assert intra_list_diversity([np.array(["a", "a", "b"]), np.array(["a", "b"])]) == pytest.approx((2 / 3 + 1.0) / 2)
    assert np.isnan(intra_list_diversity([np.array(["a"])]))
