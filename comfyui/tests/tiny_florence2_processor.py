"""A tiny processor for a tiny Florence2: characters as tokens, images resized to 64x64.

Copied next to the tiny model's weights by the tests and loaded by transformers as the model's
own processor code (`auto_map` in `processor_config.json`), the way a Florence2 model folder ships
its processor. Only what ComfyUI-Florence2's nodes call: the processor itself, `batch_decode` and
`post_process_generation`.
"""

import torch
from transformers import BatchFeature

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]
BOS, PAD, EOS, UNK = range(4)
VOCAB_SIZE = len(SPECIAL) + 128
SIZE = 64


class TinyFlorence2Processor:
    @classmethod
    def from_pretrained(cls, _path, **_kwargs):
        return cls()

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoProcessor"):
        """transformers registers a model folder's own processor class; nothing to keep here."""

    def __call__(self, text, images, return_tensors="pt", do_rescale=True):
        ids = [BOS] + [len(SPECIAL) + ord(c) if ord(c) < 128 else UNK for c in text] + [EOS]
        image = images.convert("RGB").resize((SIZE, SIZE))
        pixels = torch.tensor(list(image.getdata()), dtype=torch.float32).reshape(SIZE, SIZE, 3).permute(2, 0, 1)
        return BatchFeature({"input_ids": torch.tensor([ids]), "pixel_values": (pixels / 255.0)[None]})

    def batch_decode(self, sequences, skip_special_tokens=False):
        return ["".join(self._token(int(i), skip_special_tokens) for i in seq) for seq in sequences]

    @staticmethod
    def _token(i, skip_special_tokens):
        if i < len(SPECIAL):
            return "" if skip_special_tokens else SPECIAL[i]
        return chr(i - len(SPECIAL))

    def post_process_generation(self, text, task, image_size):
        for token in SPECIAL:
            text = text.replace(token, "")
        return {task: text}
