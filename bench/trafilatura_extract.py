#!/usr/bin/env python3
"""trafilatura on the pages `lmlab bench extract` hands it, with datatrove's settings.

Usage: trafilatura_extract.py PAGES.jsonl OUT.json
PAGES.jsonl holds {"name", "html"} per line (already decoded text). OUT.json gets
{"version", "seconds", "texts"}: one text per page in order ("" where trafilatura returns
nothing), and the seconds spent in extract() alone.
"""
import json
import sys
import time

import trafilatura


def main():
    pages = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    texts, seconds = [], 0.0
    for page in pages:
        start = time.perf_counter()
        # datatrove's Trafilatura extractor: favor_precision, no comments, deduplicate.
        text = trafilatura.extract(page["html"], favor_precision=True, include_comments=False, deduplicate=True)
        seconds += time.perf_counter() - start
        texts.append(text or "")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"version": trafilatura.__version__, "seconds": seconds, "texts": texts}, f)


if __name__ == "__main__":
    main()
