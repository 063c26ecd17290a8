from tasks.core.gates import GateConfig, check_gates
from tasks.core.naming import gguf_file_name, ollama_tag, variant_name
from tasks.core.secrets import redact


def test_gate_reasons_name_metric_value_and_limit():
    gates = GateConfig(max_kld_mean=0.05, max_ppl_ratio=1.1, min_top1_agreement=0.9)
    reasons = check_gates({"kld_mean": 0.08, "perplexity": 12.0, "top1_agreement": 0.95}, 10.0, gates)
    assert reasons == ["kld_mean 0.08 > 0.05", "perplexity ratio 1.2000 > 1.1"]


def test_most_specific_per_quant_override_wins():
    gates = GateConfig(max_ppl_ratio=1.1, per_quant={"Q4": {"max_ppl_ratio": 2.0}, "Q4_K": {"max_ppl_ratio": 1.5}})
    assert gates.for_quant("Q4_K_M").max_ppl_ratio == 1.5
    assert gates.for_quant("Q4_0").max_ppl_ratio == 2.0
    assert gates.for_quant("Q8_0").max_ppl_ratio == 1.1


def test_names_follow_one_convention():
    assert gguf_file_name("SmolLM2-135M-Instruct", "q4_k_m") == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert variant_name("SmolLM2 135M", "gguf", "Q4_K_M") == "smollm2-135m-gguf-q4_k_m"
    assert ollama_tag("SmolLM2-135M-Instruct", "Q8_0") == "smollm2-135m-instruct:q8_0"


def test_tokens_are_redacted(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-value-123")
    unknown_token = "hf_" + "abcdefghij" * 3  # not in the environment: caught by its shape
    text = redact(f"auth secret-value-123 and {unknown_token}")
    assert "secret-value-123" not in text and "hf_abcdefghij" not in text
