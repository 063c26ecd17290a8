"""A per-quant gate override adds to the default thresholds; it never drops one."""

from tasks.core.gates import GateConfig, GateThresholds, check_gates


def test_an_override_keeps_the_defaults_it_does_not_set():
    gates = GateConfig.model_validate({"max_kld_mean": 0.1, "per_quant": {"Q4": {"max_ppl_ratio": 1.3}}})
    limits = gates.for_quant("Q4_K_M")
    assert limits.max_kld_mean == 0.1  # inherited: the KLD check still applies to Q4
    assert limits.max_ppl_ratio == 1.3
    assert check_gates({"kld_mean": 0.5}, 10.0, limits) == ["kld_mean 0.5 > 0.1"]


def test_a_longer_prefix_wins_only_for_the_limits_it_sets():
    gates = GateConfig.model_validate({
        "max_kld_mean": 0.1, "max_ppl_ratio": 1.1,
        "per_quant": {"Q4": {"max_ppl_ratio": 2.0, "min_top1_agreement": 0.8}, "Q4_K": {"max_ppl_ratio": 1.5}},
    })
    limits = gates.for_quant("q4_k_m")  # matching ignores case
    assert limits == GateThresholds(max_kld_mean=0.1, max_ppl_ratio=1.5, min_top1_agreement=0.8)
    assert gates.for_quant("Q8_0") == GateThresholds(max_kld_mean=0.1, max_ppl_ratio=1.1)


def test_an_explicit_null_turns_a_default_check_off():
    gates = GateConfig.model_validate({"max_kld_mean": 0.1, "per_quant": {"Q2": {"max_kld_mean": None}}})
    assert gates.for_quant("Q2_K").max_kld_mean is None
    assert gates.for_quant("Q3_K").max_kld_mean == 0.1
