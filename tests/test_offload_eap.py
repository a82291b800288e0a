"""The expert-activation-path baseline (MoE-Infinity style, DESIGN.md section 4): a request's layer-by-expert
activation counts are matched against past requests (cosine over the layers seen so far), and the next layer's
experts are ranked by the closest past request plus what this request already used there."""

from __future__ import annotations

import torch

from chattracker.offload.prefetch import ActivationPathPredictor, Predictor

TOKEN = torch.zeros(1, 4)  # one token: decode
PROMPT = torch.zeros(5, 4)  # several: prefill


def request(predictor: ActivationPathPredictor, path: list[list[int]], tokens: int = 1) -> None:
    predictor.begin_request()
    for position, experts in enumerate(path):
        predictor.observe(position, torch.tensor([experts] * tokens))


def test_the_next_layer_is_ranked_by_the_closest_past_request():
    predictor = ActivationPathPredictor(num_layers=3, num_experts=8, top_k=2)
    request(predictor, [[0, 1], [2, 3], [4, 5]])  # request A
    request(predictor, [[6, 7], [4, 5], [0, 1]], tokens=2)  # request B
    predictor.begin_request()
    assert len(predictor.history) == 2 and predictor.current.sum() == 0
    predictor.observe(0, torch.tensor([[6, 7]]))  # starts like B
    decode = predictor.predict(0, TOKEN)
    assert decode.ranking == [4, 5] and decode.predicted == {4, 5} and not decode.pooled
    prefill = predictor.predict(0, PROMPT)
    assert prefill.ranking == [4, 5] and prefill.predicted == {4, 5} and prefill.pooled
    predictor.observe(1, torch.tensor([[2, 6]]))  # this request's own use at layer 1 adds to B's
    ranked = predictor.predict(0, TOKEN)
    # B's layer 1 (4, 5: half each) plus this request's (2, 6: half each): ties keep the lower expert first
    assert ranked.ranking == [2, 4, 5, 6] and ranked.predicted == {2, 4}
    assert predictor.predict(1, TOKEN).ranking[:2] == [0, 1]  # B's layer 2, as the path so far is B's
    assert predictor.predict(2, TOKEN) is None  # no layer after the last


def test_a_path_like_a_is_predicted_from_a_and_history_is_bounded():
    predictor = ActivationPathPredictor(num_layers=3, num_experts=8, top_k=2, history=2)
    request(predictor, [[0, 1], [2, 3], [4, 5]])  # A
    request(predictor, [[6, 7], [4, 5], [0, 1]])  # B
    predictor.begin_request()
    predictor.observe(0, torch.tensor([[0, 1], [0, 3]]))  # mostly A's layer 0
    assert predictor.predict(0, PROMPT).ranking == [2, 3]
    predictor.observe(1, torch.tensor([[2, 3], [2, 3]]))  # and it goes A's way
    request(predictor, [[7, 6], [1, 0], [3, 2]])  # C: storing the request before it pushed A out
    predictor.begin_request()  # storing C pushes B out
    assert len(predictor.history) == 2
    assert torch.equal(predictor.history[-1][0], torch.bincount(torch.tensor([7, 6]), minlength=8).float())
    predictor.observe(0, torch.tensor([[6, 7]]))  # B's start and C's alike; B is forgotten, so C's layer 1
    assert predictor.predict(0, TOKEN).ranking == [0, 1]


def test_without_history_only_this_requests_own_counts_rank_and_nothing_known_predicts_nothing():
    predictor = ActivationPathPredictor(num_layers=2, num_experts=8, top_k=2)
    predictor.begin_request()
    assert predictor.history == []  # an empty request is not remembered
    assert predictor.predict(0, TOKEN) is None
    predictor.observe(1, torch.tensor([[3, 1], [3, 5], [3, 8]]))  # 8 is padding (>= num_experts): not counted
    assert predictor.current[1].tolist() == [0, 1, 0, 3, 0, 1, 0, 0]
    prediction = predictor.predict(0, TOKEN)
    assert prediction.ranking == [3, 1, 5] and prediction.predicted == {3, 1}
    assert Predictor().predict(0, TOKEN) is None  # load-on-demand predicts nothing


def test_counts_accumulate_a_single_activation_is_remembered_and_both_parts_are_normalised():
    predictor = ActivationPathPredictor(num_layers=2, num_experts=8, top_k=1)
    predictor.begin_request()
    predictor.observe(1, torch.tensor([[4]]))  # a request of one activation
    predictor.begin_request()
    assert len(predictor.history) == 1
    predictor.observe(0, torch.tensor([[3]]))
    predictor.observe(0, torch.tensor([[3]]))  # a second step adds to the first
    assert predictor.current[0, 3] == 2
    predictor.observe(1, torch.tensor([[2]]))  # this request's own use and the past one, each divided by its sum
    assert predictor.predict(0, torch.zeros(2, 4)).ranking == [2, 4]  # equal scores: the lower expert first
    predictor.observe(1, torch.tensor([[6]]))
    ranked = predictor.predict(0, torch.zeros(2, 4))  # two tokens: pooled, every ranked expert predicted
    assert ranked.pooled and ranked.ranking == [4, 2, 6] and ranked.predicted == {4, 2, 6}
    decode = predictor.predict(0, TOKEN)
    assert not decode.pooled and decode.predicted == {4}
