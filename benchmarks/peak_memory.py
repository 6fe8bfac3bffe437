"""Peak memory of torch tensors on the CPU, the counterpart of torch.cuda.max_memory_allocated (shared by the
benchmarks that compare memory)."""

from __future__ import annotations

from torch._C._profiler import _ExtraFields_Allocation
from torch.profiler import profile


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
