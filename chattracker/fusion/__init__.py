"""The fusion module: semantic tracking and foreground verification around any base tracker.

A grounding round, one module per step: ``candidates`` (the base box, the grounder's proposals, template
re-detections from ``redetect``) -> ``identities`` (tracklets: an identity per object across rounds, with
its history) -> ``scoring`` (measurements: ``appearance`` memory, ``motion`` prior, background, ``colour``)
-> ``features`` and ``target_model`` (the learned log-odds that a candidate is the target) -> ``path``
(which tracklet is the target: online dynamic programme with a switching cost) -> ``decision`` (the
round's box and whether to re-initialise the base). ``schedule`` says when a round runs, ``semantic``
grounds the descriptions on a frame or a search region.
"""
