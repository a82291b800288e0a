"""Plant known bugs one at a time in a temporary copy of the repository and report which tests catch them.

    uv run python tests/mutations/run_mutations.py            # every mutation (a few minutes on 2 cores)
    uv run python tests/mutations/run_mutations.py --only rpo-key-ignores-pixels --json out.json
    uv run python tests/mutations/run_mutations.py --list

Each mutation is a literal text replacement in one source file (it must match exactly once, so a refactor that
moves the code makes the script fail loudly instead of silently testing nothing) and names the tests expected to
catch it. The copy imports its own sources: the folders are linked under their import names on ``PYTHONPATH``, which
takes precedence over the editable install. A mutation counts as caught when the named tests fail on the copy;
the script exits 1 if any mutation survives or does not apply. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"chattracker": "chattracker", "chattracker_eval": "eval", "chattracker_trackers": "trackers",
            "chattracker_prompts": "prompts", "chattracker_configs": "configs"}


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text), each must occur exactly once
    tests: tuple[str, ...]  # pytest node ids or -k expressions ("-k expr" entries)


MUTATIONS = [
    Mutation("decode-drops-expert-output", "the one-token decode path adds no expert output",
             "chattracker/offload/runtime.py",
             (("            output[0, slot] = (result[0] * top_k_weights[0, slot]).to(output.dtype)\n",
               "            output[0, slot] = (result[0] * 0).to(output.dtype)\n"),),
             ("tests/test_offload_decode.py::test_offloaded_decode_matches_stock_transformers_step_by_step",)),
    Mutation("decode-wrong-topk-weight", "the one-token decode path weighs every expert by the first top-k weight",
             "chattracker/offload/runtime.py",
             (("output[0, slot] = (result[0] * top_k_weights[0, slot]).to(output.dtype)",
               "output[0, slot] = (result[0] * top_k_weights[0, 0]).to(output.dtype)"),),
             ("tests/test_offload_decode.py::test_offloaded_decode_matches_stock_transformers_step_by_step",)),
    Mutation("atomic-write-is-plain-write", "atomic_write_text replaced by a plain write_text",
             "chattracker/results.py",
             (('    path.parent.mkdir(parents=True, exist_ok=True)\n    fd, tmp',
               '    path.parent.mkdir(parents=True, exist_ok=True)\n    path.write_text(text, encoding="utf-8")\n'
               '    return\n    fd, tmp'),),
             ("tests/test_results_atomic.py",)),
    Mutation("atomic-write-leaves-temp", "a failed atomic write leaves its temp file behind",
             "chattracker/results.py",
             (("        Path(tmp).unlink(missing_ok=True)\n", "        pass\n"),),
             ("tests/test_results_atomic.py",)),
    Mutation("runner-keeps-stale-temporaries", "a rerun leaves the temp file of a write cut short by a kill",
             "eval/runner.py",
             (('    for path in results_dir.glob(".*.tmp"):\n', '    for path in []:\n'),),
             ("tests/test_results_atomic.py",)),
    Mutation("rpo-key-ignores-pixels", "the RPO cache key ignores the pixels", "chattracker/rpo.py",
             (('"image": image_digest(image), "box"', '"image": None, "box"'),),
             ("tests/test_rpo.py",)),
    Mutation("rpo-key-ignores-grounder", "the RPO cache key ignores the grounder", "chattracker/rpo.py",
             (('"grounder": component_identity(grounder),\n                          "config"',
               '"grounder": None,\n                          "config"'),),
             ("tests/test_rpo.py",)),
    Mutation("pytracking-invalid-frames-pass-precision",
             "pytracking protocol: invalid frames pass precision (TNL2K P 91.71 -> 100.0)", "eval/protocols.py",
             (("        center[~valid] = np.inf\n", "        center[~valid] = -1.0\n"),),
             ("tests/test_eval_benchmarks.py",)),
    Mutation("hub-layout-transpose-disabled", "the transpose for the hub layout of fused experts disabled",
             "chattracker/offload/convert.py",
             (("            if transposed:\n", "            if False:\n"),),
             ("tests/test_offload_decode.py::test_hub_layout_of_fused_experts_converts_to_the_same_store",)),
    Mutation("read-mode-no-odirect-no-fadvise", "O_DIRECT off and posix_fadvise removed",
             "chattracker/offload/store.py",
             (('_O_DIRECT = getattr(os, "O_DIRECT", 0)', "_O_DIRECT = 0"),
              ("        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n", "        pass\n")),
             ("tests/test_offload_store.py",)),
    Mutation("read-mode-no-fadvise", "buffered reads no longer drop their pages (posix_fadvise removed)",
             "chattracker/offload/store.py",
             (("        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n", "        pass\n"),),
             ("tests/test_offload_store.py",)),
    Mutation("colours-of-the-surroundings", "the colour rule inverted (colours of the surroundings)",
             "chattracker/mllm/attributes.py",
             (("inside, around = region_colors(image, box), surrounding_colors(image, box)",
               "around, inside = region_colors(image, box), surrounding_colors(image, box)"),),
             ("tests/test_attributes.py",)),
    Mutation("hf-never-sends-the-frame", "the hf describer never sends the frame", "chattracker/mllm/hf.py",
             (('{"role": "user", "content": [picture, {"type": "text", "text": prompt.user}]}',
               '{"role": "user", "content": [{"type": "text", "text": prompt.user}]}'),),
             ("tests/test_mllm_hf.py",)),
    Mutation("chat-describer-takes-box-as-given", "ChatDescriber.describe draws a numpy box without converting it",
             "chattracker/mllm/chat.py",
             (("        box = Box.from_any(box)\n        shown, shown_box", "        shown, shown_box"),),
             ("tests/test_numpy_inputs.py",)),
    Mutation("rpo-trace-keeps-numpy", "numpy settings leave np.bool_ / numpy scalars in the RPO trace and cache",
             "chattracker/rpo.py",
             (('return plain_json({"description": asdict(self.description), "top1_iou": self.top1_iou, '
               '"trace": self.trace})',
               'return {"description": asdict(self.description), "top1_iou": self.top1_iou, "trace": self.trace}'),
              ('"positive": bool(iou >= config.positive_iou)', '"positive": iou >= config.positive_iou')),
             ("tests/test_rpo.py", "tests/test_numpy_inputs.py")),
    Mutation("box-keeps-numpy-scalars", "Box keeps numpy scalars (a numpy box breaks the cached RPO trace)",
             "chattracker/types.py",
             (("            object.__setattr__(self, name, float(getattr(self, name)))\n",
               "            pass\n"),),
             ("tests/test_types.py", "tests/test_rpo.py")),
]


def _copy_repo(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _environment(copy: Path) -> dict[str, str]:
    shim = copy / ".mutation_imports"
    shim.mkdir()
    for name, folder in PACKAGES.items():
        (shim / name).symlink_to(copy / folder, target_is_directory=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim), str(copy)]), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("CHATTRACKER_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    return env


def _check_imports(copy: Path, env: dict[str, str]) -> None:
    probe = "import json, " + ", ".join(PACKAGES) + "; print(json.dumps([m.__file__ for m in (" + \
            ", ".join(PACKAGES) + ")]))"
    files = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=copy, env=env, check=True,
                                      capture_output=True, text=True).stdout)
    outside = [f for f in files if not Path(f).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise SystemExit(f"the copy would import the original sources: {outside}")


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.path
    text = path.read_text()
    for old, new in mutation.edits:
        count = text.count(old)
        if count != 1:
            raise ValueError(f"{mutation.name}: expected the text once in {mutation.path}, found it {count} times: "
                             f"{old.strip()[:80]!r}")
        text = text.replace(old, new)
    path.write_text(text)


def run(mutation: Mutation | None, tests: tuple[str, ...], timeout: int) -> dict:
    """Run ``tests`` on a fresh copy with ``mutation`` planted (None: unmutated baseline)."""
    with tempfile.TemporaryDirectory(prefix="chattracker-mutant-") as folder:
        copy = Path(folder)
        _copy_repo(copy)
        env = _environment(copy)
        _check_imports(copy, env)
        if mutation is not None:
            apply(mutation, copy)
        start = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
        try:
            done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as error:
            output, code = str(error.stdout or ""), -1
        failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)))
        summary = (re.findall(r"^=* ?(\d+ (?:passed|failed|error).*?)=*$", output, flags=re.M) or [output[-300:]])[-1]
        return {"exit_code": code, "failed_tests": failed, "summary": summary.strip(),
                "seconds": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only these mutations (by name)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--baseline", action="store_true", help="also run each mutation's tests unmutated first")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutation run")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        parser.error(f"unknown mutation in {args.only}; --list shows them")
    if args.list:
        for mutation in chosen:
            print(f"{mutation.name:45s} {mutation.path:35s} {mutation.bug}")
        return 0
    report, survivors = [], 0
    for mutation in chosen:
        entry = {"mutation": mutation.name, "bug": mutation.bug, "file": mutation.path, "tests": list(mutation.tests)}
        if args.baseline:
            entry["baseline"] = run(None, mutation.tests, args.timeout)
        try:
            outcome = run(mutation, mutation.tests, args.timeout)
        except ValueError as error:
            outcome = {"exit_code": None, "failed_tests": [], "summary": f"NOT APPLIED: {error}", "seconds": 0}
        entry.update(outcome)
        # caught: pytest ran and reported failing tests (exit 1); 0 = survived, anything else = broken run
        entry["caught"] = outcome["exit_code"] == 1 and bool(outcome["failed_tests"])
        if args.baseline and entry["baseline"]["exit_code"] != 0:  # the tests fail anyway: they prove nothing
            entry["caught"] = False
            outcome["summary"] = f"the unmutated tests fail too: {entry['baseline']['summary']}"
        survivors += not entry["caught"]
        report.append(entry)
        verdict = "CAUGHT  " if entry["caught"] else "SURVIVED"
        print(f"{verdict} {mutation.name}: {mutation.bug}", flush=True)
        for test in outcome["failed_tests"]:
            print(f"           caught by {test}", flush=True)
        if not entry["caught"]:
            print(f"           {outcome['summary']}", flush=True)
    print(f"{len(report) - survivors} of {len(report)} planted bugs caught")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
