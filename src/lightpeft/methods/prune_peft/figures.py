"""The search's picture: which module kinds survive in which layers, round by round (the paper's staggered
LoRA / adapter placements)."""

from __future__ import annotations

from pathlib import Path


def plot_survivors(survivors: list[list[str]], num_layers: int, groups: list[str], path: str | Path) -> None:
    """One panel per module group (`lora`, `adapter`, ...): layers across, rounds down (0 = the supernet, the last
    row = the searched plan); a filled cell is a module that is still there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(groups), figsize=(1.5 + 0.35 * num_layers * len(groups) + 1.5 * len(groups),
                                                     1.2 + 0.3 * len(survivors)), squeeze=False)
    for ax, group in zip(axes[0], groups):
        grid = np.zeros((len(survivors), num_layers))
        for row, kept in enumerate(survivors):
            for name in kept:
                g, layer = name.split("/")
                if g == group:
                    grid[row, int(layer)] = 1.0
        ax.imshow(grid, aspect="auto", cmap="Greens", vmin=0, vmax=1.2, interpolation="nearest")
        ax.set(title=group, xlabel="layer", ylabel="round")
        ax.set_xticks(range(num_layers))
        ax.set_yticks(range(len(survivors)))
        ax.set_yticklabels([*map(str, range(len(survivors) - 1)), "final"])
    fig.suptitle("surviving PEFT modules by round")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
