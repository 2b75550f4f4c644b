"""`sparselstm train`: train an LSTMP keyword classifier on a corpus from `sparselstm data` (PyTorch)."""

from __future__ import annotations

import time
from pathlib import Path

from ._files_and_checks import check_at_least, check_output_file, command_line


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train an LSTMP keyword classifier (PyTorch), or evaluate one with --evaluate",
        description="Train normalise -> LSTMP -> mean over time -> linear on a corpus built by `sparselstm data` "
                    "(or score a saved checkpoint with --evaluate). Saves MODEL.pt (torch.load(weights_only=True); "
                    "the LSTM under lstm., readable by every sparselstm command) and MODEL.head.npz "
                    "(normalisation + linear head, for evaluation without PyTorch).")
    parser.add_argument("data", metavar="DATA", help="corpus directory (train/val/test.npz) or a feature set .npz")
    parser.add_argument("-o", "--output", metavar="MODEL.pt", help="checkpoint to write (required unless --evaluate)")
    parser.add_argument("--evaluate", metavar="MODEL.pt",
                        help="do not train: score this checkpoint on every split of DATA, with PyTorch and with "
                             "the NumPy float reference (sw.reference) + MODEL.head.npz")
    parser.add_argument("--cells", type=int, default=256, help="LSTM cells per layer (default 256)")
    parser.add_argument("--proj", type=int, default=128, help="projection size, 0 for none (default 128)")
    parser.add_argument("--layers", type=int, default=1, help="stacked layers (default 1)")
    parser.add_argument("--peephole", action="store_true", help="use our PeepholeLSTMP (slower to train)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle schedule)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1: a shared machine)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args):
    from ..spec.errors import SparseLSTMError

    for flag in ("cells", "layers", "epochs", "batch_size", "threads"):
        check_at_least(getattr(args, flag), 1, "--" + flag.replace("_", "-"))
    check_at_least(args.proj, 0, "--proj")
    if args.output and not args.evaluate:
        check_output_file(Path(args.output))
    try:
        import torch
    except ImportError:
        raise SparseLSTMError("training needs PyTorch: pip install 'sparselstm[torch]'") from None
    torch.set_num_threads(args.threads)
    from ..sw import train as training
    from ..sw.speech.task import Task

    task = Task.load(args.data)
    if args.evaluate:
        return _evaluate(args.evaluate, task)
    if not args.output:
        raise training.TrainError("give the checkpoint to write with -o MODEL.pt (or --evaluate MODEL.pt)")
    if "train" not in task.splits:
        raise training.TrainError(f"{args.data}: no training split (train.npz)")
    model = training.build_classifier(task, args.cells, args.proj, args.layers, args.peephole, args.seed)
    lstm = training.to_lstmp_model(model)
    print(f"{task.name}: {len(task.split('train'))} training utterances, {task.num_classes} words; "
          f"{lstm.describe()}; {sum(m.size for m in lstm.matrices().values())} LSTM weights")
    started = time.time()
    history = training.train(model, task, args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                             progress=not args.quiet)
    seconds = round(time.time() - started, 1)
    accuracies = {split: training.evaluate(model, task, split) for split in task.splits if split != "train"}
    paths = training.save_checkpoint(
        model, args.output, command=command_line(),
        data=str(args.data), corpus=task.manifest.get("config", {}), history=history, accuracy=accuracies,
        train_seconds=seconds, torch_version=str(torch.__version__))
    shown = ", ".join(f"{split} {acc:.4f}" for split, acc in accuracies.items())
    print(f"{args.output} (+ {paths['lstm']}, {paths['head']}): {shown}; trained in {seconds} s")
    return 0


def _evaluate(path, task):
    from ..sw import train as training
    from ..sw.loaders import load_model
    from ..sw.reference import reference_forward
    from ..sw.speech.task import ClassifierHead, TaskError

    model, _ = training.load_checkpoint(path)
    if tuple(model.vocabulary) != tuple(task.vocabulary):
        raise TaskError(f"{path} was trained on another vocabulary ({len(model.vocabulary)} words) than "
                        f"{task.name} ({task.num_classes} words)")
    exported = training.exported_paths(path)
    lstm = load_model(exported["lstm"])  # the torch-free export, so this checks it too
    head = ClassifierHead.load(exported["head"])
    numpy_predict = head.predict_fn(lambda x: reference_forward(lstm, x))
    for split, data in task.splits.items():
        torch_accuracy = training.evaluate(model, task, split)
        numpy_accuracy = task.score(numpy_predict, split, batch_size=64)
        print(f"{path} on {task.name} {split} ({len(data)} utterances): accuracy {torch_accuracy:.4f} (PyTorch), "
              f"{numpy_accuracy:.4f} (NumPy reference_forward + head)")
    return 0
