"""The fusion module: semantic tracking and foreground verification around any base tracker.

Parts, one job each: ``appearance`` (memory of confirmed target looks), ``motion`` (Kalman prior on
the box), ``schedule`` (when to run the grounder), ``semantic`` (grounding the descriptions on a
frame or search region), ``verification`` (scoring and choosing among candidates), ``association``
(keeping candidate identities across grounding rounds with ``lap``).
"""
