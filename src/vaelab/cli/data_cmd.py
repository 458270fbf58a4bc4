"""``vaelab data pack``: turn any dataset vaelab reads into a packed, memory-mappable directory."""

from __future__ import annotations

import argparse
import sys

import torch

from vaelab.cli.common import add_command, add_split_option, check_at_least, writing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="Dataset tools (pack).", description="Dataset tools.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pack = add_command(actions, "pack", run_pack)
    pack.add_argument("source", metavar="SOURCE", help="dataset name, image folder or .npz file")
    pack.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_split_option(pack, "train")
    pack.add_argument("--data-dir", metavar="DIR", help="root of mnist/ etc. (default: $VAELAB_DATA)")
    pack.add_argument("--image-size", type=int, default=28, help="side for folder images (default 28)")
    pack.add_argument("--channels", type=int, choices=[1, 3], default=1, help="folder images: 1 gray, 3 RGB")
    pack.add_argument("--shard-mb", type=int, default=256, help="shard size in MiB (default 256)")
    pack.add_argument(
        "--shuffle-seed", type=int, default=0, help="shuffle the images once with this seed before packing"
    )
    pack.add_argument("--no-shuffle", action="store_true", help="keep the source order")


def run_pack(args: argparse.Namespace) -> int:
    """Write a dataset as sharded uint8 arrays + index, for training on data larger than memory.

    Pack SOURCE (digits, mnist, fashion-mnist, an image folder or a .npz file) into DIR as sharded
    uint8 .npy arrays with an index.json. Train on it with --dataset DIR (or data.name=packed,
    data.path=DIR): batches are read through memory maps in large contiguous blocks.
    """
    from vaelab.cli.common import source_fields, validated_data_config
    from vaelab.data import PackedDataset, load_dataset, pack_dataset

    check_at_least(args.shard_mb, 1, "--shard-mb")
    fields = {"data_dir": args.data_dir, "image_size": args.image_size, "channels": args.channels,
              **source_fields(args.source)}  # fmt: skip
    dataset = load_dataset(validated_data_config(fields, "vaelab data pack options"), args.split)
    if isinstance(dataset, PackedDataset):
        dataset = dataset.to_memory()
    if not args.no_shuffle:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.shuffle_seed))
        dataset = dataset.subset(order)
    with writing("--out", args.out):
        out = pack_dataset(dataset, args.out, shard_bytes=args.shard_mb << 20)
    print(f"packed {len(dataset)} images {dataset.image_shape} into {out}", file=sys.stderr)
    return 0
