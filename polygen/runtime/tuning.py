"""Run-time tuning constants the cost model must agree with: the product owns them, the compiler reads them.

Torch-free, so the compiler can import it without loading torch.
"""

from __future__ import annotations

__all__ = ["COLLECTIVE_BYTES_PER_S", "COLLECTIVE_LATENCY_S", "CPU_CHUNK_BYTES", "LINCOMB_SLOTS", "SYM_BLOCKS",
           "SYM_MIN_ROWS", "collective_seconds"]

# The torch backend computes a symmetric product as the upper triangle of SYM_BLOCKS² blocks, mirrored:
# (k + 1)/2k of the FLOPs. Below SYM_MIN_ROWS rows a product is launch-bound and stays one GEMM.
SYM_BLOCKS = 4
SYM_MIN_ROWS = 256

# Eager CPU runs of a batch go in chunks of about this many bytes of input, one batched call each
# (bench/chunk_bench.py; bench/RESULTS.md, "CPU batch chunking").
CPU_CHUNK_BYTES = 4 * 2**20

# Terms one launch of the Triton linear-combination kernel reads; longer sums chain launches through a
# full-precision accumulator, so they round once, as one launch would.
LINCOMB_SLOTS = 8

# One collective's cost: a latency plus bytes over a bandwidth (gloo on this CPU, W = 2: all_reduce of 4 B in
# ~270 µs, of 16 MiB in ~20 ms; bench/bench_collectives.py, bench/RESULTS.md §9). The distributed optimizers
# weigh a tensor-parallel bucket's Gram all-reduces against the owner all-to-all with it.
COLLECTIVE_LATENCY_S = 3e-4
COLLECTIVE_BYTES_PER_S = 8.5e8


def collective_seconds(nbytes: float) -> float:
    """Estimated seconds of one collective moving ``nbytes`` per rank."""
    return COLLECTIVE_LATENCY_S + nbytes / COLLECTIVE_BYTES_PER_S
