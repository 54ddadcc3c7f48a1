"""``breastlab`` command line: serve, import, train, evaluate, calibrate, publish, al-study, effort, agreement,
bundle."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from breastlab.bundle import PROJECT_ROOT, get_bundle
from breastlab.cli_bundle import add_bundle_commands

SAMPLES = PROJECT_ROOT / "samples" / "breast_lesions_usg"
APP_DIR = PROJECT_ROOT / "apps" / "breastlab"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args) or 0
    except (LookupError, ValueError, FileNotFoundError) as e:
        print(f"breastlab {args.command}: error: {e}", file=sys.stderr)
        return 2


def cmd_serve(args) -> None:
    """Import ``--data`` into a new studies folder (first run only), then become the MONAI Label server.

    A DICOMweb URL as ``--studies`` serves a PACS instead (``breastlab.server.datastore.dicomweb``)."""
    studies = args.studies
    if studies.startswith(("http://", "https://")):
        os.environ["BREASTLAB_DICOMWEB_MODALITIES"] = ",".join(args.modalities)
        if args.cache:
            os.environ["BREASTLAB_DICOMWEB_CACHE"] = str(Path(args.cache).resolve())
    elif not (Path(studies) / "datastore_v2.json").is_file():
        from breastlab.server.datastore.studies import import_dataset

        import_dataset(args.data, studies)
    print(f"BreastLab MONAI Label server: http://{args.host}:{args.port}/  (studies: {studies})", flush=True)
    from breastlab.server.start import server_command

    os.execv(sys.executable, server_command(APP_DIR, studies, args.host, args.port))


def cmd_import(args) -> None:
    from breastlab.server.datastore.studies import import_dataset

    n = import_dataset(args.data, args.studies, args.split)
    print(f"imported {n} images into {args.studies}")


def cmd_train(args) -> int | None:
    """Train in this process, or with ``--processes N`` re-run this command in N ``torchrun`` processes, each
    merging the bundle's ``configs/multi_gpu_train.json`` (DDP)."""
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    if args.processes and not under_torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.processes}",
                   "-m", "breastlab.cli", *args.argv]
        return subprocess.run(command).returncode
    bundle = get_bundle(args.bundle)
    data = args.data[0] if args.data and len(args.data) == 1 else args.data
    overrides = {k: v for k, v in {"data_dir": data, "epochs": args.epochs, "ckpt_dir": args.out}.items() if v}
    if args.hold_out:
        overrides["held_out"] = _held_out(bundle, args.hold_out)
    overrides.update(_parse_overrides(args.override))
    extra = [*args.extra, "multi_gpu_train"] if under_torchrun else args.extra
    parser = bundle.train(*extra, resume=args.resume, **overrides)
    state = parser.get_parsed_content("validate#evaluator").state
    metric = next(iter(parser["validate"]["key_metric"]))
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"best {metric}: {state.best_metric:.4f} at epoch {state.best_metric_epoch}")


def cmd_evaluate(args) -> None:
    from breastlab.evaluation.evaluate import evaluate, print_report
    from breastlab.evaluation.plots import plot_click_curves, plot_reliability

    bundle = get_bundle(args.bundle, args.recipe, **_parse_overrides(args.override))
    only = _column_rule("--only", args.only) if args.only else None
    report = evaluate(bundle, args.data, args.split, args.weights, args.save_masks, args.grad_cam, only)
    print_report(report)
    out = Path(args.out or f"{bundle.name}_evaluation.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    if report["clicks"] and report["clicks"]["summary"]["n"]:
        summary = report["clicks"]["summary"]
        title = f"{bundle.name}: simulated clicks ({args.split or 'all'}, {summary['n']} lesions)"
        figure = plot_click_curves({bundle.name: summary}, out.with_name(f"{out.stem}_clicks.png"), title)
        print(f"wrote {figure}")
    if report["reliability"]:
        title = f"{bundle.name}: reliability ({args.split or 'all'}, {report['n_images']} images)"
        print(f"wrote {plot_reliability(report['reliability'], out.with_name(f'{out.stem}_reliability.png'), title)}")


def cmd_calibrate(args) -> None:
    from breastlab.evaluation.calibrate import calibrate, print_calibration

    report = calibrate(get_bundle(args.bundle), args.data, args.split, args.weights, args.write)
    print_calibration(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    if report["written"]:
        print(f"wrote temperature {report['temperature']:g} and the BI-RADS model into {report['written']}")


def cmd_publish(args) -> None:
    from breastlab.bundle import publish_weights

    bundle = get_bundle(args.bundle, **_parse_overrides(args.override))
    path = publish_weights(bundle, args.checkpoint, half=not args.float32, out=args.to)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def cmd_al_study(args) -> None:
    from breastlab.activelearning.study import STRATEGIES, print_summary, run_study
    from breastlab.data import dataset_dicts

    bundle = get_bundle(args.bundle, **_parse_overrides(args.override))
    rows = run_study(bundle, args.data, args.out, args.initial, args.per_round, args.rounds, tuple(args.seeds),
                     tuple(args.strategies or STRATEGIES), args.epochs, workers=args.workers)
    print_summary(rows, dataset_dicts(args.data, "train"))
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'learning_curve.png'}")


def cmd_effort(args) -> None:
    from breastlab.server.datastore.effort import EffortStore, plot, summary, table

    report = summary(EffortStore.of(args.studies, create=False).rows())
    print(table(report))
    if args.plot:
        print(f"wrote {plot(report, args.plot)}")


def cmd_agreement(args) -> None:
    from breastlab.evaluation.agreement_report import agreement_report

    agreement_report(args.studies, args.out, args.bootstrap)


def _column_rule(option: str, rule: str) -> dict:
    from breastlab.data import DatasetError, column_rule

    try:
        return column_rule(rule)
    except DatasetError as e:
        raise DatasetError(f"{option} {e}") from e


def _held_out(bundle, rule: str) -> dict:
    held_out = _column_rule("--hold-out", rule)
    if "held_out" not in json.loads((bundle.root / "configs" / "train.json").read_text()):
        raise SystemExit(f"{bundle.name}: its configs/train.json has no held_out setting")
    return held_out


def _parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs; values parsed as JSON when possible (numbers, lists), else kept as text."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"override {pair!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="breastlab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the MONAI Label server (default: on the shipped samples)")
    s.add_argument("--studies", default=str(PROJECT_ROOT / "studies" / SAMPLES.name),
                   help="MONAI Label studies folder, or a PACS's DICOMweb URL such as "
                        "http://127.0.0.1:8042/dicom-web (default: studies/breast_lesions_usg)")
    s.add_argument("--data", default=str(SAMPLES), help="dataset folder imported when the studies folder is new "
                                                        "(default: the shipped samples)")
    s.add_argument("--modalities", nargs="+", default=["MG", "US"],
                   help="with a DICOMweb URL as --studies: the modalities served (default: MG US)")
    s.add_argument("--cache", help="with a DICOMweb URL: cache folder "
                                   "(default: ~/.cache/breastlab/dicomweb/<url hash>)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("import", help="dataset folder -> MONAI Label studies folder")
    s.add_argument("data", help="dataset folder (images/, optional masks/, manifest.csv)")
    s.add_argument("studies", help="studies folder to create or extend")
    s.add_argument("--split", help="only this split (default: every row)")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("train", help="train a bundle with its configs/train.json")
    s.add_argument("bundle", help="bundle name under bundles/ or a bundle folder")
    s.add_argument("--data", nargs="+", help="dataset folder(s), each read with its own train and val split "
                   "(default: the bundle's data_dir)")
    s.add_argument("--hold-out", metavar="COLUMN=PREFIX", help="leave the cases whose manifest COLUMN starts with "
                   "PREFIX out of training and validate on them alone, e.g. --hold-out 'device=GE Logiq 5'")
    s.add_argument("--epochs", type=int)
    s.add_argument("--out", help="checkpoint folder (default: the bundle's models/)")
    s.add_argument("--resume", action="store_true", help="go on from the run saved after every epoch in the "
                   "checkpoint folder (resume.pt), with the same options")
    s.add_argument("--with", dest="extra", action="append", default=[], metavar="CONFIG",
                   help="merge configs/CONFIG.json after train.json, e.g. --with distill (repeatable)")
    s.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                   help="any other train.json override, e.g. --set learning_rate=0.0003 (repeatable)")
    s.add_argument("--processes", type=int, metavar="N",
                   help="train in N processes with DDP (torchrun; one GPU each, else gloo on CPU)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("publish", help="a training checkpoint -> the bundle's models/model.pt (float16)")
    s.add_argument("bundle", help="bundle name under bundles/ or a bundle folder")
    s.add_argument("checkpoint", help="checkpoint written by training (state dict, or one under 'model')")
    s.add_argument("--float32", action="store_true", help="keep float32 (default: float16, half the file)")
    s.add_argument("--to", help="write here instead of the bundle's models/model.pt (e.g. a teacher's weights)")
    s.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                   help="inference config override the weights must fit, e.g. --set map_stride=8")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("al-study", help="simulated active-learning study: random, uncertainty, diverse, hybrid picks")
    s.add_argument("bundle", help="segmentation bundle name under bundles/ or a bundle folder")
    s.add_argument("--data", required=True, help="dataset folder with train and val splits (e.g. busi)")
    s.add_argument("--out", default="runs/al_study", help="folder for results.json and learning_curve.png")
    s.add_argument("--initial", type=int, default=20)
    s.add_argument("--per-round", type=int, default=20)
    s.add_argument("--rounds", type=int, default=5)
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--strategies", nargs="+", help="some of random uncertainty diverse hybrid (default: all)")
    s.add_argument("--epochs", type=int, default=10, help="training epochs per round (from scratch)")
    s.add_argument("--workers", type=int, default=1, help="(strategy, seed) runs trained side by side")
    s.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                   help="bundle config override for training and scoring, e.g. --set image_size=[128,128]")
    s.set_defaults(func=cmd_al_study)

    s = sub.add_parser("evaluate", help="evaluate a bundle on a dataset folder")
    s.add_argument("bundle", help="bundle name under bundles/ or a bundle folder")
    s.add_argument("--data", required=True, help="dataset folder (images/, optional masks/, manifest.csv)")
    s.add_argument("--split", help="only this split (default: every row of the manifest)")
    s.add_argument("--only", metavar="COLUMN=PREFIX", help="only the cases whose manifest COLUMN starts with PREFIX, "
                   "e.g. --only 'device=GE Logiq 5' (a scanner held out of training)")
    s.add_argument("--out", help="JSON report path (default: <bundle>_evaluation.json)")
    s.add_argument("--weights", help="checkpoint to evaluate (default: the bundle's models/model.pt)")
    s.add_argument("--save-masks", help="also write predicted masks (0/255 PNG) into this folder")
    s.add_argument("--recipe", metavar="CONFIG", help="a config of the bundle merged over its inference config: "
                   "the network of weights trained with --with CONFIG (e.g. mias)")
    s.add_argument("--grad-cam", metavar="LAYER", help="score Grad-CAM of the classifier at this module (e.g. "
                   "backbone.layer4) as the lesion map instead of the bundle's own map")
    s.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. a teacher's --set 'network_def#channels=[24,48,96,192,384]'")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("calibrate", help="fit a classifier's temperature and BI-RADS suggestion on a validation split")
    s.add_argument("bundle", help="bundle name under bundles/ or a bundle folder (a benign/malignant classifier)")
    s.add_argument("--data", nargs="+", required=True, help="dataset folder(s), their cases pooled; the BI-RADS "
                   "suggestion is fitted where a manifest has a birads column (e.g. busbra)")
    s.add_argument("--split", default="val", help="the split fitted on (default: val)")
    s.add_argument("--weights", help="checkpoint to calibrate (default: the bundle's models/model.pt)")
    s.add_argument("--out", help="also write the JSON report here")
    s.add_argument("--write", action="store_true", help="store the temperature and the BI-RADS model (null when "
                   "none was fitted) in the bundle's configs/inference.json")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("effort", help="annotation effort per model and annotator, from a studies folder")
    s.add_argument("studies", help="studies folder the server recorded into (<studies>/.breastlab/effort.sqlite)")
    s.add_argument("--plot", metavar="PNG", help="also write seconds per image and share kept per model here")
    s.set_defaults(func=cmd_effort)

    s = sub.add_parser("agreement", help="agreement between the readers of a studies folder (table, CSV, figure)")
    s.add_argument("studies", help="studies folder whose images several readers labelled")
    s.add_argument("--out", help="write agreement.csv, agreement.json and agreement.png here")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    s.set_defaults(func=cmd_agreement)

    add_bundle_commands(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
