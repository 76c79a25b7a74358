"""Rebuild the SST-2 demo sample shipped in src/warmstart/demo/sst2/ from the full GLUE files.

Usage: python bench/make_demo_sample.py ../shared/data/sst2 [ROWS]
"""

import csv
import random
import shutil
import sys
from pathlib import Path

source = Path(sys.argv[1])
rows_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
target = Path(__file__).resolve().parents[1] / "src/warmstart/demo/sst2"

with open(source / "train.tsv", encoding="utf-8") as handle:
    rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
# Phrases of 8+ words: the short sub-phrases of the treebank carry little signal.
by_label: dict[str, list[list[str]]] = {}
for sentence, label in rows:
    if len(sentence.split()) >= 8:
        by_label.setdefault(label, []).append([sentence, label])
rng = random.Random(0)
total = sum(len(v) for v in by_label.values())
sample = []
for _label, items in sorted(by_label.items()):
    sample += rng.sample(items, round(rows_wanted * len(items) / total))
rng.shuffle(sample)
with open(target / "train.tsv", "w", encoding="utf-8", newline="") as handle:
    writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
    writer.writerow(["sentence", "label"])
    writer.writerows(sample)
shutil.copyfile(source / "dev.tsv", target / "dev.tsv")
print(f"wrote {len(sample)} training rows and the 872-row dev file to {target}")
