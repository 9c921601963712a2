"""`faceregen regen`: the argparse front end over the regeneration jobs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from faceregen.checkpoint import find_latest_checkpoint
from faceregen.errors import FaceregenError
from faceregen.regen.editing import parse_parts
from faceregen.regen.generate import generate_prepared
from faceregen.regen.inputs import read_label_map
from faceregen.regen.jobs import (
    Job,
    check_outputs,
    jobs_from_folders,
    jobs_from_pairs_file,
    prepare_job,
    protected_paths,
    read_job,
    run_jobs,
    write_result,
)
from faceregen.regen.model import load_model
from faceregen.regen.references import ReferenceMasks
from faceregen.regen.regions import check_disjoint, parse_region_reference, require_regional
from faceregen.utils import output_folder, remove_stale_temporaries, resolve_device


def build_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceregen regen",
        description="Regenerate a face: geometry from --mask, appearance from --ref.",
        epilog="Exit status: 0 on success; 2 on a user error, or in folder mode when any pair "
               "failed (the failed pairs are listed with their reasons at the end). "
               "See docs/regen.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    single = parser.add_argument_group("one face")
    single.add_argument("--mask", type=Path, help="label map: index PNG or colour PNG")
    single.add_argument("--ref", type=Path, help="reference photo (JPEG/PNG/WebP, any size)")
    single.add_argument("--ref-mask", type=Path,
                        help="the reference's label map; predicted with the face parser if "
                             "omitted")
    single.add_argument("--region-ref", action="append", default=[], metavar="REGIONS=IMAGE[:MASK]",
                        help="take the named regions' style from another photo (a model "
                             "trained with model=style_regional), e.g. hair=b.jpg or "
                             "skin,nose=c.jpg:c_mask.png; repeatable; the mask is predicted "
                             "with the face parser if omitted; in folder mode it applies to "
                             "every face")
    single.add_argument("--out", type=Path,
                        help="output image (default: <mask stem>_regen.png beside the mask)")
    folder = parser.add_argument_group("folder mode")
    folder.add_argument("--mask-dir", type=Path, help="folder of label maps")
    folder.add_argument("--ref-dir", type=Path, help="folder of references, paired by file stem")
    folder.add_argument("--ref-mask-dir", type=Path, help="folder of reference label maps")
    folder.add_argument("--pairs", type=Path,
                        help="CSV with header mask,ref[,ref_mask][,region_refs] (paths relative "
                             "to the CSV; region_refs: --region-ref values separated by ';'), "
                             "instead of --mask-dir/--ref-dir")
    folder.add_argument("--out-dir", type=Path, help="output folder (created if missing)")
    folder.add_argument("--batch-size", type=int, default=8, help="faces per forward pass")
    edit = parser.add_argument_group("editing")
    edit.add_argument("--edit-from", type=Path,
                      help="copy the --parts regions from this mask into the mask first")
    edit.add_argument("--parts", help="comma-separated part names, e.g. mouth,u_lip,l_lip")
    parser.add_argument("--ckpt", type=Path,
                        help="checkpoint (.pt) or export (.safetensors); default: newest "
                             "last.pt under $FACEREGEN_RUNS (default checkpoints/)")
    parser.add_argument("--parser", type=Path,
                        help="face parser checkpoint for predicting reference masks (default: "
                             "<data root>/evaluators/parser.pt of the checkpoint's config)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--compare", action="store_true",
                        help="also write <out stem>_compare.png: colour mask | reference | result")
    return parser


def read_edit(args) -> tuple[np.ndarray, list[int]] | None:
    if (args.edit_from is None) != (args.parts is None):
        raise FaceregenError("--edit-from and --parts go together")
    if args.edit_from is None:
        return None
    part_ids = parse_parts(args.parts)
    return read_label_map(args.edit_from), part_ids


def main(argv: list[str]) -> None:
    args = build_argparser().parse_args(argv)
    folder_mode = args.mask_dir is not None or args.pairs is not None
    if folder_mode == (args.mask is not None):
        raise FaceregenError("give either --mask (one face) or --mask-dir/--pairs (folder mode)")
    if args.batch_size < 1:
        raise FaceregenError("--batch-size must be at least 1")
    edit = read_edit(args)
    region_refs = tuple(parse_region_reference(text) for text in args.region_ref)
    check_disjoint(region_refs)
    device = resolve_device(args.device)

    if not folder_mode:
        out = args.out or args.mask.with_name(f"{args.mask.stem}_regen.png")
        job = Job(args.mask, args.ref, args.ref_mask, out, region_refs)
        check_outputs(job, protected_paths(job.inputs() + [args.edit_from]), args.compare)
        remove_stale_temporaries(out.parent)
        loaded = read_job(job, edit)
        checkpoint = args.ckpt or find_latest_checkpoint()
        regenerator = load_model(checkpoint, device)
        if region_refs:
            require_regional(regenerator, checkpoint)
        reference_masks = ReferenceMasks(regenerator, args.parser, device)
        pair = prepare_job(loaded, regenerator, reference_masks)
        write_result(loaded, generate_prepared(regenerator, [pair])[0], args.compare)
        print(out)
        return

    if args.out_dir is None:
        raise FaceregenError("folder mode needs --out-dir")
    if args.pairs is not None and (args.mask_dir or args.ref_dir or args.ref_mask_dir):
        raise FaceregenError("give either --pairs or --mask-dir/--ref-dir, not both")
    if not args.out_dir.parent.is_dir():
        raise FaceregenError(f"{args.out_dir}: parent folder {args.out_dir.parent} does not exist")
    if args.pairs is not None:
        jobs, failures = jobs_from_pairs_file(args.pairs, args.out_dir), []
    else:
        jobs, failures = jobs_from_folders(args.mask_dir, args.ref_dir, args.ref_mask_dir,
                                           args.out_dir)
    if region_refs:
        jobs = [replace(job, region_refs=job.region_refs + region_refs) for job in jobs]
        for job in jobs:
            check_disjoint(job.region_refs)
    protected = protected_paths(
        [path for job in jobs for path in job.inputs()] + [args.edit_from],
        [args.mask_dir, args.ref_dir, args.ref_mask_dir])
    output_folder(args.out_dir)
    checkpoint = args.ckpt or find_latest_checkpoint()
    regenerator = load_model(checkpoint, device)
    if any(job.region_refs for job in jobs):
        require_regional(regenerator, checkpoint)
    reference_masks = ReferenceMasks(regenerator, args.parser, device)
    written, job_failures = run_jobs(jobs, regenerator, reference_masks, edit, args.batch_size,
                                     args.compare, progress=True, protected=protected)
    failures += job_failures
    print(f"wrote {written} face(s) to {args.out_dir}")
    if failures:
        print(f"{len(failures)} pair(s) failed:", file=sys.stderr)
        for name, reason in failures:
            print(f"  {name}: {reason}", file=sys.stderr)
        sys.exit(2)
