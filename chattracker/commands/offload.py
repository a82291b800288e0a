"""`chattracker offload`: convert an MoE checkpoint into an expert store, inspect it, generate text from it."""

from __future__ import annotations

import argparse
import json
import time

from chattracker.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "offload", help="run MoE models with experts paged from disk under a memory budget",
        description="Experts live in a quantized per-expert store; a byte budget bounds how many stay in memory.")
    actions = parser.add_subparsers(dest="action", required=True)
    convert = actions.add_parser("convert", help="quantize a transformers MoE checkpoint's experts into a store")
    convert.add_argument("model_dir", help="folder with config.json and *.safetensors")
    convert.add_argument("store_dir", help="output folder (manifest.json + experts/)")
    convert.add_argument("--bits", type=int, choices=(8, 4, 2), default=4, help="bits per weight (default 4)")
    convert.add_argument("--group", type=_group, default=None, help="group length (default 64 for INT8/INT4, 32 for INT2)")
    convert.add_argument("--cold-bits", type=int, choices=(4, 2), default=None,
                         help="also write every expert at this lower precision (the cold tier that --cold-tail reads)")
    convert.add_argument("--cold-group", type=_group, default=None, help="group length of the cold tier (default 32 for INT2)")
    info = actions.add_parser("info", help="describe a store")
    info.add_argument("store_dir")
    generate = actions.add_parser("generate", help="greedy text generation with offloaded experts")
    generate.add_argument("model_dir")
    generate.add_argument("store_dir")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--expert-budget", default="25%", help="bytes (4GiB, 512MB) or a share (25%%, 0.25)")
    generate.add_argument("--method", choices=("fate", "klotski", "lod", "lod-overlap", "eap", "resident"),
                          default="fate", help="expert serving method (default fate; klotski: fate for batches plus "
                          "the store's co-activation table); lod, lod-overlap and eap are baselines")
    generate.add_argument("--max-new-tokens", type=_positive, default=32, help="tokens to generate (at least 1)")
    generate.add_argument("--prefill-chunk", type=_tokens, default=128,
                          help="prompt tokens per prefill pass; bounds activation memory (0: whole prompt at once)")
    generate.add_argument("--cold-tail", type=_share, default=0.0,
                          help="share of a prefill's expert assignments (least-demanded experts first) read from the "
                               "store's cold tier, e.g. 0.25 (default 0: none; needs a store converted with --cold-bits)")
    generate.add_argument("--verify", choices=("first", "always"), default="first",
                          help="check each expert file's CRC32 on its first read (default) or on every read")
    generate.add_argument("--threads", type=_positive, default=None,
                          help="torch compute threads (default: torch's, one per core); on a small or shared machine "
                               "fewer than the cores is often faster, since the expert readers need a core too")
    parser.set_defaults(func=run)


def _checked(parse, accept, expected: str):
    """An argparse type: ``parse`` the text, and ``accept`` the value or say what was ``expected``."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive = _checked(int, lambda v: v >= 1, "a whole number >= 1")
_group = _checked(int, lambda v: v >= 2 and v % 2 == 0, "a positive even group length (e.g. 32, 64)")
_tokens = _checked(int, lambda v: v >= 0, "a number of tokens >= 0")
_share = _checked(float, lambda v: 0 <= v < 1, "a share in [0, 1)")


def run(args: argparse.Namespace) -> int:
    from chattracker.offload import convert_checkpoint
    from chattracker.offload.runtime import describe_store

    if args.action == "convert":
        manifest = convert_checkpoint(args.model_dir, args.store_dir, bits=args.bits, group_size=args.group,
                                      cold_bits=args.cold_bits, cold_group_size=args.cold_group)
        summary = describe_store(manifest.parent)
        print(f"wrote {manifest}")
        print(f"{summary['moe_layers']} MoE layers x {summary['experts_per_layer']} experts, "
              f"{summary['expert_bytes'] / 2**20:.2f} MiB each, {summary['total_expert_bytes'] / 2**20:.1f} MiB in all; "
              f"peak RSS {summary['convert']['peak_rss_bytes'] / 2**20:.0f} MiB")
        if summary["cold_tier"]:
            print(f"cold tier: INT{summary['cold_tier']['quantization']['bits']}, "
                  f"{summary['cold_tier']['expert_bytes'] / 2**20:.2f} MiB per expert")
        return 0
    if args.action == "info":
        print(json.dumps(describe_store(args.store_dir), indent=1))
        return 0
    return _generate(args)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transformers import AutoTokenizer

    from chattracker.offload import load_offloaded_model

    if not args.prompt.strip():
        raise InputError("--prompt is empty")
    if not any((Path(args.model_dir) / name).is_file() for name in TOKENIZER_FILES):
        # transformers then builds an empty tokenizer from config.json alone, which turns any prompt into no tokens
        raise InputError(f"no tokenizer in {args.model_dir} (none of {', '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise InputError(f"cannot load the tokenizer in {args.model_dir}: {str(error).splitlines()[0]}") from None
    if not tokenizer(args.prompt)["input_ids"]:
        raise InputError(f"the tokenizer in {args.model_dir} turns the prompt into no tokens")
    model, engine = load_offloaded_model(args.model_dir, args.store_dir, expert_budget=args.expert_budget,
                                         method=args.method, verify=args.verify, cold_tail=args.cold_tail,
                                         prefill_chunk=args.prefill_chunk or None, threads=args.threads)
    try:
        inputs = tokenizer(args.prompt, return_tensors="pt")
        start = time.perf_counter()
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
        new = output[0, inputs["input_ids"].shape[1]:]
        print(tokenizer.decode(new, skip_special_tokens=True))
        stats = engine.stats.summary()
        print(f"[{len(new)} tokens in {seconds:.2f} s; hit rate {stats['hit_rate']:.2f}; "
              f"read {stats['bytes_read'] / 2**20:.1f} MiB ({engine.store.read_mode}); "
              f"waited on IO {stats['io_wait_s']:.2f} s"
              + (f"; {stats['loads_cold']} cold-tier loads" if args.cold_tail else "") + "]")
    finally:
        engine.close()
    return 0
