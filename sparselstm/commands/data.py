"""`sparselstm data`: synthesise a keyword-spotting corpus with espeak-ng (see docs/task.md)."""

from __future__ import annotations

import os
from pathlib import Path

from ._files_and_checks import check_at_least, check_output_dir, check_output_file


def register(subparsers):
    parser = subparsers.add_parser(
        "data", help="build a speech corpus (espeak-ng words, augmented, log-mel features, split by voice)",
        description="Synthesise a keyword-spotting corpus with espeak-ng over every English accent x voice "
                    "variant (duplicates removed by audio), with random speed, pitch, gain, placement and "
                    "noise (white, pink, babble; SNR 0-20 dB), split by voice, as log-mel features. "
                    "Writes OUT/{train,val,test}.npz and OUT/manifest.json.")
    parser.add_argument("--task", choices=("digits", "words"), default="digits",
                        help="digits: the 10 digits (quick); words: the 35 Speech Commands words (benchmark)")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small: CI-sized, under a minute; full: for training the shipped models")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output directory (with --subset-of: the .npz file to write)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (voices split, augmentation)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default 1; each also runs espeak-ng)")
    parser.add_argument("--per-word", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                        help="utterances per word in each split, overriding --size")
    parser.add_argument("--subset-of", metavar="CORPUS",
                        help="do not synthesise: write a balanced subset of CORPUS's test split (--per-class "
                             "utterances of every word) to the .npz file -o, e.g. the small test sets in models/")
    parser.add_argument("--per-class", type=int, default=20, help="utterances per word with --subset-of")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args):
    from ..sw.speech.corpus import SIZES, CorpusConfig, build_corpus

    if args.subset_of:
        return _subset(args)
    check_at_least(args.workers, 1, "--workers")
    check_output_dir(Path(args.output))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # parallelism comes from the worker processes
    sizes = dict(SIZES[(args.task, args.size)])
    if args.per_word:
        sizes.update(train_per_word=args.per_word[0], val_per_word=args.per_word[1], test_per_word=args.per_word[2])
    config = CorpusConfig(task=args.task, seed=args.seed, **sizes)
    manifest = build_corpus(config, args.output, workers=args.workers, progress=not args.quiet)
    counts = ", ".join(f"{split} {n}" for split, n in manifest["counts"].items())
    voices = ", ".join(f"{split} {len(v)}" for split, v in manifest["voices"].items())
    print(f"{args.output}: {args.task} ({len(manifest['vocabulary'])} words): {counts} utterances; "
          f"voices {voices}; {manifest['seconds']} s")
    return 0


def _subset(args):
    from ..sw.speech.task import Task, TaskError

    if not args.output.endswith(".npz"):
        raise TaskError(f"-o {args.output}: with --subset-of, the output is a feature set file ending in .npz")
    check_at_least(args.per_class, 1, "--per-class")
    check_output_file(Path(args.output))
    test = Task.load(args.subset_of).split("test")
    subset = test.balanced_subset(args.per_class, seed=args.seed)
    subset.save(args.output, compressed=True)
    print(f"{args.output}: {len(subset)} utterances ({args.per_class} per word) of {args.subset_of} test split, "
          f"{subset.features.shape[1]} steps x {subset.input_size} features")
    return 0
