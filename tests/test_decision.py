"""The keep rule (swarm_node/research/decision.py): the t multiplier, the pooled paired noise, the
decision on K seeds and the confirmation on fresh ones; and the decision-quality benchmark's
measurements on a table whose answers are known by construction."""
import importlib.util
import json
import math

import pytest

from conftest import REPO
from swarm_node.research.decision import PRIOR_DF, PairedNoise, Rule, confirm, decide, t_quantile


def test_t_quantile_falls_with_df_and_reaches_the_normal_quantile():
    values = [t_quantile(df) for df in range(1, 500)]
    assert all(a >= b for a, b in zip(values, values[1:])), values
    assert t_quantile(1) == pytest.approx(12.71) and t_quantile(2) == pytest.approx(4.30)
    assert t_quantile(10_000) == pytest.approx(1.96, abs=0.01)
    assert t_quantile(5) > t_quantile(60) > 1.96 - 1e-9


def test_prior_comes_from_the_baseline_spread():
    noise = PairedNoise.from_baseline([4.0, 4.1, 4.2])
    assert noise.prior_sd == pytest.approx(math.sqrt(2) * 0.1)
    assert (noise.sum_sq, noise.df, noise.total_df) == (0.0, 0, PRIOR_DF)
    assert noise.sd == pytest.approx(noise.prior_sd)
    assert PairedNoise.from_baseline([4.0]).prior_sd >= 0.001  # one value: at least the floor (sqrt(2) x it)
    assert PairedNoise.from_baseline([4.0, 4.0, 4.0], floor=0.005).prior_sd == 0.005


def test_add_pools_centred_differences():
    noise = PairedNoise(prior_sd=0.05)
    noise.add([0.1, 0.3])  # mean 0.2: 0.01 + 0.01
    noise.add([1.0, 2.0, 3.0])  # mean 2: 1 + 0 + 1
    noise.add([5.0, 5.0])  # a large but constant difference is an effect, not noise
    assert noise.sum_sq == pytest.approx(2.02)
    assert noise.df == 1 + 2 + 1 and noise.total_df == 4 + PRIOR_DF
    assert noise.sd == pytest.approx(math.sqrt((2.02 + PRIOR_DF * 0.05 ** 2) / (4 + PRIOR_DF)))


def test_one_difference_adds_nothing():
    noise = PairedNoise(prior_sd=0.05)
    noise.add([0.7])
    noise.add([])
    assert (noise.sum_sq, noise.df, noise.sd) == (0.0, 0, pytest.approx(0.05))


def seeds_of(diffs, start=0):
    """head/candidate values whose paired differences (head - candidate) are `diffs`."""
    head = {start + i: 0.0 for i in range(len(diffs))}  # 0 - (-d) == d exactly
    return head, {start + i: -d for i, d in enumerate(diffs)}


def test_decide_keeps_a_clear_effect_and_refuses_a_null_one():
    noise = PairedNoise(prior_sd=0.01)
    head, cand = seeds_of([0.10, 0.11, 0.09])
    c = decide(head, cand, [0, 1, 2], noise, Rule())
    assert c.passed and c.improvement == pytest.approx(0.10)
    assert c.differences == pytest.approx((0.10, 0.11, 0.09)) and c.seeds == (0, 1, 2)
    assert c.se == pytest.approx(0.01 / math.sqrt(3))
    assert c.threshold == pytest.approx(t_quantile(PRIOR_DF) * 0.01 / math.sqrt(3))  # prior only: 4.30, not t=2
    assert "+0.1000" in c.describe()
    for diffs in ([0.01, -0.01, 0.0], [-0.1, -0.1, -0.1], [0.03, -0.02, 0.01]):
        assert not decide(*seeds_of(diffs), [0, 1, 2], noise, Rule()).passed, diffs
    assert (noise.sum_sq, noise.df) == (0.0, 0)  # deciding never feeds the noise


def test_decide_uses_the_rule_t_once_history_is_long():
    noise = PairedNoise(prior_sd=0.01, sum_sq=0.0001 * 1000, df=1000)  # t_quantile 1.96 < Rule.t
    c = decide(*seeds_of([0.02, 0.02, 0.02]), [0, 1, 2], noise, Rule(t=2.0))
    assert c.threshold == pytest.approx(2.0 * noise.sd / math.sqrt(3))
    assert decide(*seeds_of([0.02] * 3), [0, 1, 2], noise, Rule(t=5.0)).threshold == pytest.approx(
        5.0 * noise.sd / math.sqrt(3))


def test_decide_refuses_below_min_delta_even_with_a_tiny_se():
    noise = PairedNoise(prior_sd=1e-7)
    rule = Rule(min_delta=0.002)
    small = decide(*seeds_of([0.0015, 0.0015, 0.0015]), [0, 1, 2], noise, rule)
    assert not small.passed and small.threshold == 0.002
    at = decide(*seeds_of([0.002, 0.002, 0.002]), [0, 1, 2], noise, rule)
    assert at.improvement == at.threshold == 0.002 and not at.passed  # strictly above
    assert decide(*seeds_of([0.0025, 0.0025, 0.0025]), [0, 1, 2], noise, rule).passed


def test_decide_judges_only_the_named_seeds_and_raises_on_a_missing_one():
    head, cand = seeds_of([0.1, 0.1, 0.1, -5.0])
    assert decide(head, cand, [0, 1, 2], PairedNoise(prior_sd=0.01), Rule()).passed  # seed 3 not asked
    with pytest.raises(KeyError):
        decide(head, cand, [0, 1, 4], PairedNoise(prior_sd=0.01), Rule())
    del cand[2]
    with pytest.raises(KeyError):
        decide(head, cand, [0, 1, 2], PairedNoise(prior_sd=0.01), Rule())
    with pytest.raises(KeyError):
        confirm(head, cand, [2, 3], PairedNoise(prior_sd=0.01), Rule())


def test_confirm_needs_the_fresh_mean_above_min_delta_whatever_the_se():
    rule = Rule(min_delta=0.002)
    wide = PairedNoise(prior_sd=1.0)  # an SE far above the improvement does not matter here
    head, cand = seeds_of([0.01, -0.005], start=3)  # mean 0.0025
    c = confirm(head, cand, [3, 4], wide, rule)
    assert c.passed and c.threshold == 0.002 and c.improvement == pytest.approx(0.0025)
    assert c.se == pytest.approx(1.0 / math.sqrt(2)) and c.seeds == (3, 4)
    assert not confirm(*seeds_of([0.003, 0.0], start=3), [3, 4], wide, rule).passed  # mean 0.0015
    assert not confirm(*seeds_of([0.002, 0.002], start=3), [3, 4], wide, rule).passed  # not strictly above
    assert not confirm(*seeds_of([-0.05, 0.01], start=3), [3, 4], PairedNoise(prior_sd=1e-6), rule).passed


def test_as_dict_round_trips():
    noise = PairedNoise.from_baseline([4.0, 4.03, 3.98])
    noise.add([0.01, 0.03, 0.02])
    noise.add([0.2, 0.1])
    d = json.loads(json.dumps(noise.as_dict()))
    again = PairedNoise(**d)
    assert again == noise and again.sd == noise.sd and again.total_df == noise.total_df


def benchmark():
    spec = importlib.util.spec_from_file_location("decision_quality", REPO / "benchmarks" / "decision_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def five_seed_table(a=0.02):
    """LR 0.003 rows are flat; LR 0.006 rows are 0.05 better (0.07 with kaiming) plus e = [a, -a, 0, 0, 0].
    One-change pairs: LR pairs have centred differences -e (2a^2 each, 4 df: a/sqrt(2)), INIT pairs have
    constant differences (0, 4 df): noise sqrt(4a^2/16) = a/2. Spread: two rows with 2a^2 over 16 df = a/2."""
    e = [a, -a, 0.0, 0.0, 0.0]
    rows = []
    for lr in (0.003, 0.006):
        for init in ("normal", "kaiming"):
            gain = 0.0 if lr == 0.003 else 0.05 + (0.02 if init == "kaiming" else 0.0)
            err = [0.0] * 5 if lr == 0.003 else e
            rows.append({"state": f"{lr}-{init}", "config": {"LEARNING_RATE": lr, "INIT": init},
                         "seeds": {str(s): {"val_bpb": 4.0 - gain + err[s]} for s in range(5)}})
    return {"format": 2, "seeds": list(range(5)), "grid": {"LEARNING_RATE": [0.003, 0.006], "INIT": ["normal", "kaiming"]},
            "tiers": {"cpu": {"rows": rows}}}


def test_benchmark_measures_a_five_seed_table():
    m = benchmark().measure(five_seed_table(), "cpu", "val_bpb")
    assert m["seeds"] == ["0", "1", "2", "3", "4"]
    assert m["noise"] == pytest.approx(0.01) and m["noise_df"] == 16
    assert m["by_name"] == {"LEARNING_RATE": pytest.approx(0.02 / math.sqrt(2)), "INIT": pytest.approx(0.0)}
    assert m["spread"] == pytest.approx(0.01)
    assert m["effect_base"] == pytest.approx(0.05) and m["effect_all"] == pytest.approx(0.06)
    assert m["contexts"] == 2


def test_benchmark_simulation_separates_large_effects_from_nulls():
    counts = benchmark().simulate(noise=0.01, effect=0.1, spread=0.01, rule=Rule(), k=3, c=2, nodes=20,
                                  experiments=20, real_fraction=0.5, seed=1)
    null, real = counts["null"], counts["real"]
    assert null[0] + real[0] == 400 and null[0] > 100 and real[0] > 100
    assert real[2] / real[0] > 0.95 and null[2] / null[0] < 0.05
    assert real[2] <= real[1] and null[2] <= null[1]  # kept only after passing the decision


def test_a_baseline_prior_counts_for_its_own_degrees_of_freedom():
    """Five baseline seeds estimate the spread with 4 degrees of freedom: the prior weighs that much."""
    noise = PairedNoise.from_baseline([3.0, 3.1, 2.9, 3.05, 2.95])
    assert noise.prior_df == 4 and noise.total_df == 4
    assert noise.prior_sd == pytest.approx(math.sqrt(2) * 0.0790569, rel=1e-5)
    assert PairedNoise(**noise.as_dict()) == noise
