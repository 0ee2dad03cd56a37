"""A random-weight Llama with a word-level tokenizer ("w2 w17 ..." is one token per word, no EOS, so a
capture generates exactly the requested number of tokens): the model the thread and long-output benches
time. Benches import it as a sibling module (`python bench/<name>.py` puts bench/ on sys.path)."""

from __future__ import annotations

from pathlib import Path


def save_word_llama(out: Path, *, vocab: int, hidden: int, inter: int, layers: int, heads: int,
                    max_positions: int) -> None:
    """Write the model and its tokenizer to `out` (seeded: the same weights every time)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, **{f"w{i}": i for i in range(2, vocab)}}
    tk = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                      pad_token_id=1, bos_token_id=None, eos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = None
    model.save_pretrained(out)
    tok.save_pretrained(out)
