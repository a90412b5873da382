"""One inner layer's output at the last token of a llama.cpp decode, read through its eval callback.

llama.cpp gives a token's hidden state after the last layer only, and that layer is shaped for
predicting the next token; a layer past the middle of the network carries more of what the text
means, and a head reads the two side by side (docs/benchmarks.md, "A middle layer's state"). The
callback sees every tensor of every decode: it asks for the layer's output (`l_out-<layer>`, as
llama.cpp names it in every architecture) only while `capture` runs, and copies the last row.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Iterator

import numpy as np

# The layer read: this share of the network's depth (the output of layer 11 of Gemma 3 270M's 18),
# chosen on the sets in ../shared leaving each set out in turn (docs/benchmarks.md).
STATE_DEPTH = 0.6


def tap_layer(n_layer: int) -> int:
    """The 0-based index of the layer at STATE_DEPTH of a network of `n_layer` layers."""
    return min(n_layer - 1, max(0, round(STATE_DEPTH * n_layer) - 1))


class LayerTap:
    """Installed in a context's parameters before the context is made (`install`); `capture` around
    a decode then yields the last token's output of `layer` (zeros if the graph had no such tensor)."""

    def __init__(self, layer: int, width: int):
        import llama_cpp
        from llama_cpp._ggml import libggml

        self.layer, self.width = layer, width
        self._name = f"l_out-{layer}".encode()
        self._get_name = libggml.ggml_get_name
        self._get_name.argtypes, self._get_name.restype = [ctypes.c_void_p], ctypes.c_char_p
        self._nbytes = libggml.ggml_nbytes
        self._nbytes.argtypes, self._nbytes.restype = [ctypes.c_void_p], ctypes.c_size_t
        self._copy = libggml.ggml_backend_tensor_get
        self._copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        self._copy.restype = None
        self._on = False
        self._row: np.ndarray | None = None
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._visit)  # kept: C holds the pointer

    def install(self, params) -> None:
        params.cb_eval = self.callback
        params.cb_eval_user_data = None

    def _visit(self, tensor, ask, _user) -> bool:
        if not self._on or self._get_name(tensor) != self._name:
            return not ask  # ask: not wanted; after a computed tensor: go on
        if ask:
            return True
        row = 4 * self.width  # float32 activations, one row per token of the batch
        size = self._nbytes(tensor)
        if size >= row and size % row == 0:
            out = np.empty(self.width, dtype=np.float32)
            self._copy(tensor, out.ctypes.data, size - row, row)
            self._row = out
        return True

    @contextmanager
    def capture(self) -> Iterator[list[np.ndarray]]:
        """Yields a list that holds the layer's last row once the block ends."""
        self._on, self._row, out = True, None, []
        try:
            yield out
        finally:
            self._on = False
            out.append(self._row if self._row is not None else np.zeros(self.width, dtype=np.float32))
