"""Inference latency, throughput and peak memory of a ready model over real dev examples."""

from __future__ import annotations

import statistics
import time

import torch

from lightpeft import memory

WARMUP_BATCHES = 3


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_COLUMNS = ("labels", "start_positions", "end_positions")  # classification / causal LM, extractive QA


def batches_of(dataset, collator, batch_size: int, examples: int, device, labels: bool = False) -> list[dict]:
    """Consecutive batches covering `examples` rows plus warm-up (wrapping around a small split), of the model
    inputs only (QA windows' `example_id` / `offset_mapping` are dropped), and the labels if asked."""
    examples = max(examples, batch_size)  # at least one timed batch
    rows = [dataset[i % len(dataset)] for i in range(examples + WARMUP_BATCHES * batch_size)]
    return [_collate(dataset, rows[start : start + batch_size], collator, device, labels)
            for start in range(0, len(rows) - batch_size + 1, batch_size)]


def longest_batch(dataset, collator, batch_size: int, device, labels: bool = False) -> dict:
    """The batch of the `batch_size` longest rows: the padded shape of a run's largest batch (a shuffled run pads
    the batch holding the longest row to that row), so what its peak memory is measured on."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
    return _collate(dataset, [dataset[i] for i in (longest * batch_size)[:batch_size]], collator, device, labels)


def _collate(dataset, rows: list[dict], collator, device, labels: bool) -> dict:
    wanted = MODEL_INPUTS + (LABEL_COLUMNS if labels else ())
    columns = [c for c in dataset.column_names if c in wanted]
    return {k: v.to(device) for k, v in collator([{c: r[c] for c in columns} for r in rows]).items()}


@torch.inference_mode()
def time_inference(model: torch.nn.Module, batches: list[dict]) -> dict:
    """Median latency per batch and throughput, after warm-up batches (which also fix CPU kernel choices), the RSS
    that inference adds over the loaded model (warm-up included: it allocates the same activations), and, after
    the timed batches, the peak live tensor bytes of a forward pass on the longest batch (`live_mb`: weights,
    buffers, inputs and activations, see `memory.LiveTensors`)."""
    model.eval()
    memory.release()
    start_rss = memory.rss_mb()
    memory.reset_peak()
    for batch in batches[:WARMUP_BATCHES]:
        model(**batch)
    _sync()
    latencies, examples = [], 0
    for batch in batches[WARMUP_BATCHES:]:
        start = time.perf_counter()
        model(**batch)
        _sync()
        latencies.append(time.perf_counter() - start)
        examples += batch["input_ids"].shape[0]
    result = {
        "median_latency_ms": 1000 * statistics.median(latencies),
        "throughput_examples_per_s": examples / sum(latencies),
        "batches": len(latencies),
        "peak_rss_mb": memory.peak_rss_mb(),
        "activation_rss_mb": memory.peak_rss_mb() - start_rss,  # what inference allocates over the loaded model
        "peak_cuda_mb": memory.peak_cuda_mb(),
    }
    longest = max(batches, key=lambda b: b["input_ids"].numel())  # activations depend on the padded shape only
    with memory.LiveTensors(model, longest) as live:
        model(**longest)
    result["live_mb"] = live.peak_mb
    return result


def model_megabytes(model: torch.nn.Module) -> float:
    """Bytes held by parameters and buffers, in MiB (what a served model must keep resident)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20
