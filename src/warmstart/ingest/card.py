"""The data card in words: the Markdown section the gate report and the model card show."""

from __future__ import annotations

from typing import Any

SPLITS = ("train", "validation", "test")


def data_card_markdown(card: dict[str, Any]) -> str:
    """The data card as a Markdown section, for the gate report and the model card."""
    names = card["label_names"]
    lines = [
        f"- source: `{card['source']}`"
        + (f", test: `{card['test_source']}`" if card.get("test_source") else ""),
        _columns_markdown(card),
        f"- fingerprint: `{card['fingerprint']}`",
        f"- removed: {card['removed']['empty']} empty, "
        + (
            f"{card['removed']['unreadable']} unreadable, "
            if card.get("modality") in ("image", "audio")
            else ""
        )
        + f"{card['removed']['duplicates']} duplicate rows; {card['removed']['leakage']['test']} test and "
        f"{card['removed']['leakage']['validation']} validation rows whose "
        f"{card.get('modality', 'text')} is in training (leakage)",
        "",
        "| split | rows | " + " | ".join(f"label `{n}`" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for split in SPLITS:
        dist = card["label_distribution"][split]
        lines.append(f"| {split} | {card['rows'][split]} | " + " | ".join(str(dist[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _columns_markdown(card: dict[str, Any]) -> str:
    if card.get("modality") == "audio":
        return _audio_markdown(card)
    if card.get("modality") != "image":
        return f"- text column `{card['text_column']}`, label column `{card['label_column']}`, format {card['format']}"
    images = card["images"]
    sizes = (
        f"{images['width'][0]}–{images['width'][1]} × {images['height'][0]}–{images['height'][1]} pixels, "
        + ", ".join(f"{count} {kind}" for kind, count in images["formats"].items())
    )
    if card["format"] == "imagefolder":
        return f"- images in class folders; {sizes}"
    return f"- image column `{card['image_column']}`, label column `{card['label_column']}`, format {card['format']}; {sizes}"


def _audio_markdown(card: dict[str, Any]) -> str:
    where = (
        "audio in class folders"
        if card["format"] == "audiofolder"
        else f"audio column `{card['audio_column']}`, label column `{card['label_column']}`, format {card['format']}"
    )
    return f"- {where}; {audio_facts(card)}"


def audio_facts(card: dict[str, Any]) -> str:
    """What the clips were before ingest decoded them, in one line (the gate report shows it too)."""
    audio = card["audio"]
    seconds = audio["seconds"]
    rates = ", ".join(f"{rate} Hz ({count})" for rate, count in audio["source_sample_rates"].items())
    formats = ", ".join(f"{count} {kind}" for kind, count in audio["formats"].items())
    return (
        f"{formats}; {seconds['min']}–{seconds['max']} s a clip (median {seconds['median']} s, "
        f"{seconds['total']} s in all), recorded at {rates}, resampled to {audio['sample_rate']} Hz; "
        f"{audio['cut']} clips longer than {audio['max_seconds']} s cut to it"
    )
