"""The Markdown table the benchmark scripts print (pasted as-is into issues and notes)."""

from __future__ import annotations


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print `title`, then a Markdown table of `rows` under `header`, columns padded to their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
