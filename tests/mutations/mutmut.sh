#!/usr/bin/env bash
# The mutation-testing pass of docs/mutation-testing.md: mutmut over the offload engine, RPO and the eval runner,
# configured under [tool.mutmut] in pyproject.toml. mutmut names each mutant after its file's path and only switches a
# mutant on inside the module of that name, while the runner is imported as chattracker_eval.runner from the folder
# eval/; so mutmut runs in a staging folder (git-ignored build/mutmut) whose links carry the import names.
#
#   bash tests/mutations/mutmut.sh run                       # every mutant of the configured files
#   bash tests/mutations/mutmut.sh run "chattracker.rpo.*"    # only those whose names match
#   bash tests/mutations/mutmut.sh results --all true         # each mutant and its status
#   bash tests/mutations/mutmut.sh show NAME                  # a mutant's diff
#
# Results are kept in build/mutmut/mutants between runs; remove that folder after editing the sources.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
stage=${MUTMUT_STAGE:-$repo/build/mutmut}
mkdir -p "$stage"
ln -sfn "$repo/chattracker" "$stage/chattracker"
ln -sfn "$repo/eval" "$stage/chattracker_eval"
ln -sfn "$repo/tests" "$stage/tests"
cp "$repo/pyproject.toml" "$stage/pyproject.toml"
cd "$stage"
# mutmut forks one process per mutant from one that has already run torch: with an OpenMP thread pool in the parent,
# a forked child's first parallel torch op never returns (every INT4 mutant timed out); one thread each avoids that.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export CHATTRACKER_SHARED_DATA="${CHATTRACKER_SHARED_DATA:-$(cd "$repo/.." && pwd)/shared/data}"
exec nice -n 19 uv run --project "$repo" --group mutation mutmut "$@"
