"""KV-cache capture and reinjection on tiny random models of several architectures (Hugging Face transformers)."""
import pytest
import torch

from alignnb.hf import KVCache, kv_cache_into, kv_cache_of

ARCHITECTURES = {
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2)),
    "gpt-neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(num_attention_heads=4, rotary_pct=0.5)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(num_attention_heads=4, num_key_value_heads=1, head_dim=8)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_head=4, n_embd=32, n_layer=2, n_positions=64)),
}


def tiny_model(name):
    import transformers
    config_name, model_name, extra = ARCHITECTURES[name]
    common = dict(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  max_position_embeddings=64)
    if name == "gpt2": common = dict(vocab_size=101)
    config = getattr(transformers, config_name)(**common, **extra)
    torch.manual_seed(0)
    return getattr(transformers, model_name)(config).eval()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_continuation_from_the_captured_cache_equals_the_full_forward(name):
    model = tiny_model(name)
    ids = torch.randint(3, 100, (1, 12), generator=torch.Generator().manual_seed(1))
    cache = kv_cache_of(model, ids[0, :8])
    assert isinstance(cache, KVCache) and cache.n_layers == 2 and cache.n_tokens == 8
    with torch.no_grad():
        full = model(ids).logits[0, 8:]
        continued = model(ids[:, 8:], cache=kv_cache_into(model, cache)).logits[0]
    torch.testing.assert_close(continued, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["llama-gqa", "gpt2"])
def test_a_cache_of_another_shape_is_refused_by_name(name):
    model, other = tiny_model(name), tiny_model("gemma")
    cache = kv_cache_of(other, torch.arange(3, 9))
    with pytest.raises(ValueError, match="cache"):
        kv_cache_into(model, cache)


def test_token_ids_past_the_context_or_vocabulary_are_refused_by_name():
    model = tiny_model("gpt2")
    with pytest.raises(ValueError, match="input_ids"):
        kv_cache_of(model, torch.arange(65) % 100)
    with pytest.raises(ValueError, match="input_ids"):
        kv_cache_of(model, torch.tensor([5, 101]))


def test_a_continuation_past_the_context_is_refused_by_name():
    "A 60-token cache plus 8 more ids on a 64-position model: named, not torch's IndexError from the embedding."
    from alignnb.hf import continuation_logprobs, continuation_perplexity
    model = tiny_model("gpt2")
    cache = kv_cache_of(model, torch.arange(60) % 100)
    for fn in (continuation_perplexity, continuation_logprobs):
        with pytest.raises(ValueError, match="next_ids.*exceed the model's context"):
            fn(model, cache, torch.arange(8))
        with pytest.raises(TypeError, match="cache must be a KVCache"):
            fn(model, "not a cache", torch.arange(8))
        assert torch.isfinite(torch.as_tensor(fn(model, cache, torch.arange(4)))).all()  # 60 + 3 positions fit
