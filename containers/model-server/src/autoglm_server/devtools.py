"""Make a random-init Llama-style model with a locally trained tokenizer (for tests, the lab and benchmarks).

    python -m autoglm_server.devtools DIR [--size tiny|bench|1b] [--seed N]

Nothing is downloaded: the tokenizer is trained on a built-in text, the weights are random.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SIZES = {
    # name: hidden, intermediate, layers, heads, kv heads, vocab, context
    "tiny": (64, 128, 2, 4, 2, 512, 512),
    "bench": (512, 1408, 8, 8, 8, 8000, 2048),  # about 30M parameters
    "1b": (2048, 5632, 20, 16, 16, 8000, 2048),  # about 1.0B parameters
}
TEXT = """The fleet exists to serve the model. Servers boot, drivers load, containers start.
A request arrives, the batch grows, tokens flow back to the client one by one.
Quick brown foxes jump over lazy dogs while the scheduler keeps every core busy.
Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ( ) [ ] { } " ' - + = / * & % $ # @
Hello world! How are you today? I am fine, thank you. What is the weather like?
"""


def make_random_model(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, intermediate, layers, heads, kv_heads, vocab, context = SIZES[size]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT] * 20, trainer=trainer)
    specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}  # tokens, not secrets
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_random_model(args.dir, args.size, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
