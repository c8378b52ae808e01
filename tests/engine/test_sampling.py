"""Samplers on hand-made logits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from asynclm.engine.sampling import Sampler, ban_tokens, greedy_token

LOGITS = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0, -1.0])


def test_greedy_picks_the_argmax() -> None:
    assert Sampler().sample(LOGITS) == 0
    assert Sampler.greedy().is_greedy


def test_top_k_keeps_k_tokens() -> None:
    probs = Sampler(temperature=1.0, top_k=2).probabilities(LOGITS)
    assert (probs[:2] > 0).all() and (probs[2:] == 0).all()
    assert probs.sum().item() == pytest.approx(1.0)


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    full = torch.softmax(LOGITS, -1)
    probs = Sampler(temperature=1.0, top_p=0.9).probabilities(LOGITS)
    kept = int((probs > 0).sum())
    assert full[: kept - 1].sum() < 0.9 <= full[:kept].sum()
    assert torch.allclose(probs[:kept], full[:kept] / full[:kept].sum())


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    full = torch.softmax(LOGITS, -1)
    probs = Sampler(temperature=1.0, min_p=0.2).probabilities(LOGITS)
    assert ((probs > 0) == (full >= 0.2 * full.max())).all()


def test_temperature_sharpens_and_flattens() -> None:
    cold = Sampler(temperature=0.5).probabilities(LOGITS)
    hot = Sampler(temperature=2.0).probabilities(LOGITS)
    assert cold[0] > torch.softmax(LOGITS, -1)[0] > hot[0]


def test_seeded_sampling_follows_the_distribution() -> None:
    sampler = Sampler(temperature=1.0, top_k=3)
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([sampler.sample(LOGITS, gen) for _ in range(3000)])
    counts = torch.bincount(draws, minlength=6).float() / 3000
    expected = sampler.probabilities(LOGITS)
    assert (counts - expected).abs().max() < 0.03 and counts[3:].sum() == 0


def test_ban_tokens_masks_logits() -> None:
    logits = LOGITS.clone()
    ban_tokens(logits, torch.tensor([0, 1]))
    assert Sampler().sample(logits) == 2


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_k": -1}, {"top_p": 0}, {"top_p": 1.5}, {"min_p": 1}]
)
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Sampler(**kwargs)


@given(
    values=st.lists(
        st.sampled_from([0.0, 1.0, -1.0, 2.5, float("inf"), float("-inf"), float("nan")]),
        min_size=1,
        max_size=40,
    )
)
def test_greedy_picks_what_torch_argmax_picks(values: list[float]) -> None:
    logits = torch.tensor(values, dtype=torch.float32)
    assert greedy_token(logits) == int(torch.argmax(logits))
    assert greedy_token(logits.to(torch.bfloat16)) == int(torch.argmax(logits.to(torch.bfloat16)))
