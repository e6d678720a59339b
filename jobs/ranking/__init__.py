"""How candidates become the published lists: shared by the rank stage and the gate (stages never import each
other; both import this package).

- `lists`: the fill and its inputs (segment popularity, each person's segment, item features, fill length).
- `blend`: the fixed blend ranker (`rank_person_lists`): relevance, popularity and margin, category demotion.
"""
