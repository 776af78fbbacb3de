"""Make random-init models with locally trained tokenizers (for tests, the lab and benchmarks).

    python -m autoglm_server.devtools DIR [--size tiny|bench|1b] [--seed N]          # Llama-style, text only
    python -m autoglm_server.devtools DIR --size tiny-vlm [--seed N]                 # GLM-4.1V architecture

Nothing is downloaded: the tokenizer is trained on a built-in text, the weights are random.

``tiny-vlm`` has the architecture of Open-AutoGLM's model (AutoGLM-Phone-9B is a GLM-4.1V-9B,
``Glm4vForConditionalGeneration``): a two-block vision tower and a two-layer text model with multimodal
rotary positions, a tokenizer carrying the GLM family's special tokens, an image processor config (the
PIL backend: no torchvision needed) and a chat template written for it in the manner of GLM-4.1V's. Its
context (16,384 tokens) holds a 1080x2400 phone screenshot at the default ``max_pixels`` (3,108 image
tokens) plus a 2k-token system prompt and a long answer.
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


# The GLM-4.1V family's special tokens, in the order GLM's tokenizers list them (ids differ: ours is tiny).
GLM_SPECIAL_TOKENS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "<|video|>",
    "<think>", "</think>", "<answer>", "</answer>", "<|pad|>",
]  # fmt: skip
# Written for the tiny model in the manner of GLM-4.1V's template: [gMASK]<sop>, one role tag per turn,
# an image part becomes <|begin_of_image|><|image|><|end_of_image|> (the processor expands <|image|> to one
# token per merged patch), content may be a string or a list of parts.
VLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' or m.role == 'developer' %}{{ '<|system|>' }}"
    "{%- elif m.role == 'user' %}{{ '<|user|>' }}"
    "{%- else %}{{ '<|assistant|>' }}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- if m.content is string -%}{{ m.content }}"
    "{%- else -%}{%- for part in m.content -%}"
    "{%- if part.type == 'image' or part.type == 'image_url' %}{{ '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{%- elif part.type == 'text' %}{{ part.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>\\n' }}{%- endif -%}"
)
# Extra training text so that an agent-style system prompt and its answers tokenize compactly.
VLM_TEXT = """You are a phone operation agent. Given a screenshot of the Android interface at each step, first
analyse the screen, then plan the best action. Think first inside <think>...</think>, then answer inside
<answer>...</answer> with one line of pseudo-code: do(action="Tap", element=[x,y]), do(action="Type",
text="Hello"), do(action="Swipe", start=[x1,y1], end=[x2,y2]), do(action="Long Press", element=[x,y]),
do(action="Launch", app="Settings"), do(action="Back"), do(action="Home"), do(action="Wait", duration="2
seconds"), finish(message="The task is complete."). Rules: check the current app before acting; if a page
does not load, wait; if the screen is a login page, ask the user; never tap outside the screen.
{"current_app": "System Home"} Open the settings and turn on the Wi-Fi, then search for a restaurant nearby.
"""


def make_random_vlm(path: str | Path, seed: int = 0) -> Path:
    """A tiny random-init GLM-4.1V (``Glm4vForConditionalGeneration``) with tokenizer, processor config and
    chat template; about 0.3M parameters."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration, PreTrainedTokenizerFast
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=GLM_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT, VLM_TEXT] * 20, trainer=trainer)
    specials = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}  # tokens, not secrets
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    tokenizer.chat_template = VLM_CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GLM_SPECIAL_TOKENS}
    torch.manual_seed(seed)
    config = Glm4vConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 16384,
            # head_dim 16, half of it rotary: the mrope sections (temporal, height, width) sum to 8/2 = 4
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "partial_rotary_factor": 0.5,
            },
            "eos_token_id": [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]],
            "pad_token_id": ids["<|pad|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "image_size": 336,
        },
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    model = Glm4vForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = ids["<|pad|>"]
    model.save_pretrained(out, safe_serialization=True)
    Glm4vImageProcessorPil(size={"shortest_edge": 112 * 112, "longest_edge": 28 * 28 * 15000}).save_pretrained(out)
    return out


def phone_screenshot_png(width: int = 1080, height: int = 2400, seed: int = 0, noise: int = 560) -> bytes:
    """A phone-screenshot-like PNG: status bar, app icons, text lines, and a photo-like (noisy) area of
    ``noise`` x ``noise`` pixels that keeps it about 1 MB (base64 ~1.3 MB) at the default size."""
    import io
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)  # noqa: S311 (test pixels, not secrets)
    image = Image.new("RGB", (width, height), (245, 245, 247))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, height // 30], fill=(30, 30, 30))
    icon = width // 6
    for row in range(4):
        for col in range(4):
            x, y = col * width // 4 + icon // 4, height // 10 + row * icon * 2
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            draw.rounded_rectangle([x, y, x + icon, y + icon], radius=icon // 5, fill=colour)
            draw.rectangle([x, y + icon + 10, x + icon, y + icon + 30], fill=(90, 90, 90))
    for line in range(20):
        y = height // 2 + line * height // 50
        draw.rectangle([40, y, 40 + rng.randrange(width // 3, width - 80), y + height // 120], fill=(60, 60, 60))
    if noise:
        blob = Image.frombytes("RGB", (noise, noise), rng.randbytes(noise * noise * 3))
        image.paste(blob, (width - noise - 20, height - noise - 200))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--size", choices=[*sorted(SIZES), "tiny-vlm"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size == "tiny-vlm":
        print(make_random_vlm(args.dir, args.seed))
    else:
        print(make_random_model(args.dir, args.size, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
