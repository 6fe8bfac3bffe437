"""What the benchmarks measure with: the device, its clock, and the CPU counterpart of CUDA's peak memory."""

from __future__ import annotations

import os

import torch
from torch._C._profiler import _ExtraFields_Allocation
from torch.profiler import profile


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    """The device in a table's title: the GPU's name, or the CPU's threads and load (timings move with it)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"


def cpu_peak_bytes(prof: profile) -> int:
    """The most bytes alive at once in torch's CPU allocator while `prof` (profile_memory=True) ran: every
    allocation event carries the allocator's running total of the bytes allocated since profiling began and not
    yet freed (the CPU counterpart of torch.cuda.max_memory_allocated). The total carries over between profiling
    sessions of a process, so each process profiles one build."""
    peak, stack = 0, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if isinstance(node.extra_fields, _ExtraFields_Allocation) and node.extra_fields.device.type == "cpu":
            peak = max(peak, node.extra_fields.total_allocated)
    return peak
