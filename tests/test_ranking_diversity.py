import numpy as np

from jobs.config import DiversityConfig
from jobs.ranking.diversity import intra_list_diversity, mmr_order


def test_mmr_raises_category_diversity_and_keeps_every_item():
    relevance = np.array([1.0, 0.95, 0.9, 0.85, 0.5, 0.4])
    categories = np.array(["shoes", "shoes", "shoes", "shoes", "bags", "hats"])
    plain = mmr_order(relevance, categories, DiversityConfig(strength=0.0, depth=4))
    diverse = mmr_order(relevance, categories, DiversityConfig(strength=0.5, depth=4))
    assert list(plain) == [0, 1, 2, 3, 4, 5]
    assert sorted(diverse) == list(range(6))
    assert list(diverse[:3]) == [0, 4, 5]     # the best shoe, then the other categories
    before = intra_list_diversity([categories[plain[:4]]])
    after = intra_list_diversity([categories[diverse[:4]]])
    assert before == 0.0 and after > 0.8


def test_a_weak_diversity_strength_does_not_pull_up_irrelevant_items():
    relevance = np.array([1.0, 0.95, 0.1])
    categories = np.array(["shoes", "shoes", "bags"])
    assert list(mmr_order(relevance, categories, DiversityConfig(strength=0.2, depth=3))) == [0, 1, 2]
