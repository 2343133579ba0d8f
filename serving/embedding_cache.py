"""A bounded LRU cache of sentence embeddings in front of a bi-encoder's `encode()`.

Real traffic repeats sentences (one query against many candidates): a repeated sentence costs a dict
lookup instead of a forward pass. Keys are the model's input text (normalized and prefixed by PairScorer),
so a hit returns what the encoder would compute for it (up to float rounding of another batch's padding).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class EmbeddingCache:
    """encode(sentences) -> embeddings, computing each sentence it has not kept once; misses count those computed."""

    def __init__(self, encoder, size: int) -> None:
        self.encoder = encoder
        self.size = size
        self.entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # a worker answers one batch at a time, but the demo and tests may not

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def encode(self, sentences: list[str], batch_size: int = 32, convert_to_numpy: bool = True, **kwargs) -> np.ndarray:
        with self._lock:
            found = {sentence: self.entries[sentence] for sentence in dict.fromkeys(sentences) if sentence in self.entries}
            for sentence in found:
                self.entries.move_to_end(sentence)
            missing = [sentence for sentence in dict.fromkeys(sentences) if sentence not in found]
            self.misses += len(missing)  # sentences encoded; every other lookup was served from memory
            self.hits += len(sentences) - len(missing)
        if missing:
            vectors = self.encoder.encode(missing, batch_size=batch_size, convert_to_numpy=True, **kwargs)
            # copies: a row of the batch's array is a view that would keep the whole batch array alive in the cache
            computed = {sentence: vector.copy() for sentence, vector in zip(missing, vectors, strict=True)}
            with self._lock:
                for sentence, vector in computed.items():
                    self.entries[sentence] = vector
                    self.entries.move_to_end(sentence)
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
            found.update(computed)
        return np.stack([found[sentence] for sentence in sentences]) if sentences else np.zeros((0, 0), dtype=np.float32)

    def to(self, device: str) -> EmbeddingCache:
        self.encoder = self.encoder.to(device)
        return self

    def eval(self) -> EmbeddingCache:
        self.encoder = self.encoder.eval()
        return self
