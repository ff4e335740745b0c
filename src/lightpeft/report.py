"""Human-readable output: Markdown tables and PNG plots."""

from __future__ import annotations

from pathlib import Path

import torch


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get 4 significant digits, ints thousands separators."""

    def cell(value) -> str:
        if isinstance(value, bool) or value is None:
            return "-" if value is None else str(value)
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_masks(head_masks: torch.Tensor, ffn_masks: torch.Tensor, path: str | Path) -> None:
    """Heat map of head gates and sorted FFN gates per layer, to see what estimation learned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = head_masks.shape[0]
    fig, (ax_heads, ax_ffn) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.45 * layers), width_ratios=[1, 1.4])
    image = ax_heads.imshow(head_masks.numpy(), aspect="auto", cmap="viridis")
    ax_heads.set(title="attention-head gates", xlabel="head", ylabel="layer")
    ax_heads.set_yticks(range(layers))
    fig.colorbar(image, ax=ax_heads, fraction=0.05)
    for layer in range(layers):
        values = torch.sort(ffn_masks[layer]).values.numpy()
        ax_ffn.plot(values, label=f"layer {layer}", linewidth=1)
    ax_ffn.set(title="FFN-neuron gates, sorted per layer", xlabel="neuron rank", ylabel="gate value")
    ax_ffn.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
