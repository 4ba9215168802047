"""A tiny GPT-2 from config with the small LM's tokenizer, saved to a folder, for the TRL and distributed tests."""
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def save_tiny_gpt2(path, seed: int = 0) -> Path:
    "Build a 2-layer, 32-wide GPT-2 (no dropout) with the small LM's tokenizer and save both to `path`."
    from alignnb.lm import load_small_lm
    _, tokenizer = load_small_lm(device="cpu")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    path = Path(path)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
