"""The reviewer's view of an image's readers, without MRML: segment colours and the agreement summary."""

from __future__ import annotations

CONSENSUS = "consensus"
CONSENSUS_COLOR = (1.0, 0.9, 0.1)
READER_COLORS = (  # distinct from each other and from the consensus yellow; one per reader, in name order
    (0.9, 0.25, 0.25), (0.25, 0.5, 1.0), (0.3, 0.85, 0.35), (0.85, 0.35, 0.9), (0.2, 0.85, 0.85),
    (1.0, 0.55, 0.15), (0.55, 0.35, 0.2), (0.6, 0.6, 0.6), (0.5, 0.3, 0.8), (0.95, 0.55, 0.7),
)


def reader_colors(readers) -> dict[str, tuple[float, float, float]]:
    """``{reader: colour}`` for readers in name order from ``READER_COLORS`` (repeating past ten readers)."""
    return {reader: READER_COLORS[i % len(READER_COLORS)] for i, reader in enumerate(sorted(readers))}


def given_labels(image_class: str = "", birads: str = "") -> dict:
    """The class and BI-RADS a reviewer set (blanks left out): they go over the approved source's own."""
    return {key: value for key, value in (("class", image_class), ("birads", birads)) if value}


def review_text(state: dict) -> str:
    """A review state (``GET /datastore/review``) as lines: status, each reader pair's Dice and HD95, each reader's
    class, BI-RADS, sensitivity and specificity, the consensus' class and BI-RADS, and a return's comment."""
    readers = state.get("readers") or {}
    lines = [f"{state['image']}: {state['status'].replace('_', ' ')}, readers {', '.join(sorted(readers)) or 'none'}"]
    for pair in state.get("agreement") or []:
        hd95 = "n/a" if pair.get("hd95") is None else f"{pair['hd95']:.1f} px"
        lines.append(f"Dice {' / '.join(pair['readers'])}: {pair['dice']:.3f} (HD95 {hd95})")
    for name in sorted(readers):
        read = readers[name]
        scores = ", ".join(f"{key} {read[key]:.2f}" for key in ("sensitivity", "specificity")
                           if read.get(key) is not None)
        lines.append(f"{name}: {_labels_text(read)}" + (f"; {scores}" if scores else ""))
    if readers:
        lines.append(f"{CONSENSUS}: {_labels_text(state.get('consensus') or {})}")
    if state.get("comment"):
        lines.append(f"Comment: {state['comment']}")
    return "\n".join(lines)


def _labels_text(labels: dict) -> str:
    return f"{labels.get('class') or 'no class'}, BI-RADS {labels.get('birads') or '-'}"
